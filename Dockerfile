# syntax=docker/dockerfile:1
#
# The production image of fanout: one static binary on distroless, run as
# non-root. Multi-arch without emulation: the builder runs on the build
# machine's platform and cross-compiles for the target's.
#
#   docker buildx build --platform linux/arm64,linux/amd64 -t IMAGE --push .
#
# It builds the module root (the production entry point) only; cmd/fanout-dev
# embeds an AWS emulator and never belongs in this image.

FROM --platform=$BUILDPLATFORM golang:1.26.8-bookworm AS build
ARG TARGETOS
ARG TARGETARCH
WORKDIR /src
COPY . .
# go build fetches only the modules the binary imports (`go mod download`
# would fetch the tests' too); the cache mounts keep modules and compiled
# packages between builds on the same builder.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w" -o /out/fanout .

# distroless/static: CA certificates and tzdata, no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/fanout /fanout
# The image's nonroot user (65532), stated so a change of base keeps it.
USER 65532:65532
# FANOUT_ADDR's default. Health is the orchestrator's job (the ALB probes
# /healthz), so no HEALTHCHECK: distroless has no shell or curl to run one.
EXPOSE 8080
ENTRYPOINT ["/fanout"]
