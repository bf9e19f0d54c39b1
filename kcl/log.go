package kcl

import (
	"io"

	"github.com/sirupsen/logrus"
	kcllogger "github.com/vmware/vmware-go-kcl-v2/logger"
	"go.uber.org/zap"
)

// kclLogger routes KCL's logs to zap. Unlike KCL's own adapters it never
// exits or panics: Fatalf and Panicf log at error.
type kclLogger struct{ s *zap.SugaredLogger }

func (l kclLogger) Debugf(f string, a ...any) { l.s.Debugf(f, plain(a)...) }
func (l kclLogger) Infof(f string, a ...any)  { l.s.Debugf(f, plain(a)...) } // KCL is chatty at info
func (l kclLogger) Warnf(f string, a ...any)  { l.s.Warnf(f, plain(a)...) }
func (l kclLogger) Errorf(f string, a ...any) { l.s.Errorf(f, plain(a)...) }
func (l kclLogger) Fatalf(f string, a ...any) { l.s.Errorf(f, plain(a)...) }
func (l kclLogger) Panicf(f string, a ...any) { l.s.Errorf(f, plain(a)...) }

// plain replaces the *string arguments KCL formats with %s (sequence
// numbers, shard ids of the AWS SDK's types) by their values, so that a
// line reads "checkpoint none" rather than "%!s(*string=<nil>)".
func plain(args []any) []any {
	var out []any
	for i, a := range args {
		p, ok := a.(*string)
		if !ok {
			continue
		}
		if out == nil {
			out = append([]any(nil), args...)
		}
		out[i] = "none"
		if p != nil {
			out[i] = *p
		}
	}
	if out == nil {
		return args
	}
	return out
}
func (l kclLogger) WithFields(fields kcllogger.Fields) kcllogger.Logger {
	args := make([]any, 0, 2*len(fields))
	for k, v := range fields {
		args = append(args, k, v)
	}
	return kclLogger{l.s.With(args...)}
}

// RouteGlobalLogs sends what vmware-go-kcl-v2 logs through logrus' global
// logger (lease renewal does) to log, and silences logrus' own output. The
// global logger is process state: the last caller owns it.
func RouteGlobalLogs(log *zap.Logger) {
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
