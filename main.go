// Command fanout is the fanout service: the REST API and the pipeline
// workers in one process. Configuration comes from the environment (see
// README.md); AWS settings from the AWS SDK's own chain.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/aws/aws-sdk-go-v2/config"
	"go.uber.org/zap"

	"github.com/fanout/fanout/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		if !errors.Is(err, errLogged) {
			fmt.Fprintln(os.Stderr, "fanout:", err)
		}
		os.Exit(1)
	}
}

// run returns the error that stops fanout, after logging it when the
// logger exists (a configuration error comes before it: main prints it).
func run(ctx context.Context) error {
	cfg, err := app.ConfigFromEnv(os.Getenv)
	if err != nil {
		return err
	}
	log := app.NewLogger(cfg.LogLevel)
	defer log.Sync() //nolint:errcheck // stderr
	if err := start(ctx, cfg, log); err != nil {
		log.Error("fanout stopped", zap.Error(err))
		return errLogged
	}
	return nil
}

// errLogged stops the process with exit status 1 once the error is logged.
var errLogged = errors.New("stopped with an error (logged above)")

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
