package app

import (
	"os"

	"github.com/aws/smithy-go/logging"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// NewLogger returns the JSON logger fanout writes to stderr (CloudWatch
// via awslogs on ECS).
func NewLogger(level zapcore.Level) *zap.Logger {
	enc := zap.NewProductionEncoderConfig()
	enc.TimeKey = "time"
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	core := zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.Lock(os.Stderr), level)
	return zap.New(core, zap.AddCaller())
}

// sdkLogger sends what the AWS SDK logs (retry and checksum warnings) to
// log instead of its default plain-text stderr logger.
func sdkLogger(log *zap.Logger) logging.Logger {
	s := log.Named("aws").Sugar()
	return logging.LoggerFunc(func(c logging.Classification, format string, v ...any) {
		if c == logging.Warn {
			s.Warnf(format, v...)
			return
		}
		s.Debugf(format, v...)
	})
}
