package kcl

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestKCLLoggerPlainStrings: KCL formats *string values (nil ones too) with
// %s; its lines must read as values, not Go's fallback syntax.
func TestKCLLoggerPlainStrings(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	l := kclLogger{zap.New(core).Sugar()}
	l.Warnf("checkpoint %s of shard %s, %d records", (*string)(nil), aws.String("shardId-1"), 3)
	l.Infof("plain %s", "text")
	got := logs.All()
	if len(got) != 2 {
		t.Fatalf("%d lines logged, want 2", len(got))
	}
	if want := "checkpoint none of shard shardId-1, 3 records"; got[0].Message != want {
		t.Errorf("line = %q, want %q", got[0].Message, want)
	}
	if got[1].Message != "plain text" || got[1].Level != zapcore.DebugLevel {
		t.Errorf("info line = %q at %v, want \"plain text\" at debug (KCL is chatty at info)", got[1].Message, got[1].Level)
	}
}
