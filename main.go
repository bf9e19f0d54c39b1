// Command fanout is the fanout service: the REST API and the pipeline
// workers in one process. Configuration comes from the environment (see
// README.md); AWS settings from the AWS SDK's own chain.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/fanout/fanout/app"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "fanout:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	cfg, err := app.ConfigFromEnv(os.Getenv)
	if err != nil {
		return err
	}
	log := app.NewLogger(cfg.LogLevel)
	defer log.Sync() //nolint:errcheck // stderr
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
