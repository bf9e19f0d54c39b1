package app

import (
	"io"
	"os"

	"github.com/aws/smithy-go/logging"
	"github.com/sirupsen/logrus"
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

// routeGlobalLogs sends what vmware-go-kcl-v2 logs through logrus' global
// logger (lease renewal does) to log, and silences logrus' own output. The
// global logger is process state: the last App created owns it.
func routeGlobalLogs(log *zap.Logger) {
	std := logrus.StandardLogger()
	std.SetOutput(io.Discard)
	std.SetLevel(logrus.DebugLevel)
	hooks := logrus.LevelHooks{}
	hooks.Add(logrusHook{log.Named("kcl").Sugar()})
	std.ReplaceHooks(hooks)
}

type logrusHook struct{ s *zap.SugaredLogger }

func (logrusHook) Levels() []logrus.Level { return logrus.AllLevels }

func (h logrusHook) Fire(e *logrus.Entry) error {
	switch {
	case e.Level <= logrus.ErrorLevel:
		h.s.Errorw(e.Message)
	case e.Level == logrus.WarnLevel:
		h.s.Warnw(e.Message)
	default:
		h.s.Debugw(e.Message)
	}
	return nil
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
