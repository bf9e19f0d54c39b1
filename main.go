// Command fanout is the fanout service: the REST API and the pipeline
// workers in one process. Configuration comes from the environment (see
// README.md); AWS settings from the AWS SDK's own chain. Everything it
// writes is JSON log lines on stderr, a configuration error included.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/aws/aws-sdk-go-v2/config"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/fanout/fanout/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if !run(ctx) {
		stop()
		os.Exit(1)
	}
}

// run starts fanout and reports whether it stopped cleanly; whatever stops
// it is logged first, as one JSON line.
func run(ctx context.Context) bool {
	cfg, err := app.ConfigFromEnv(os.Getenv)
	if err != nil {
		log := app.NewLogger(zapcore.InfoLevel)
		log.Error("invalid configuration", zap.Error(err))
		_ = log.Sync()
		return false
	}
	log := app.NewLogger(cfg.LogLevel)
	defer log.Sync() //nolint:errcheck // stderr
	if err := start(ctx, cfg, log); err != nil {
		log.Error("fanout stopped", zap.Error(err))
		return false
	}
	return true
}

func start(ctx context.Context, cfg app.Config, log *zap.Logger) error {
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return fmt.Errorf("AWS configuration: %w", err)
	}
	a, err := app.New(ctx, cfg, awsCfg, log)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}
