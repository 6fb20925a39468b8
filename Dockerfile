# syntax=docker/dockerfile:1
#
# sdevents: one static binary, every target (run, ingress, quota, archiver,
# aggregator, sim, replay). Build from the repository root:
#
#   docker build -t sdevents .
#
# deploy/dockerfile_test.go checks this file: every module of go.work has its
# go.mod (and go.sum) copied before the download, the builder's Go is at least
# go.work's, and the final stage is static and non-root.

# The Go of go.work's go line (or newer): GOTOOLCHAIN=local refuses to fetch
# another toolchain during the build.
ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION} AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-buildvcs=false

# Module files first, so that the download layer is rebuilt only when one of
# them changes. go.work names every module; each needs its go.mod here.
COPY go.work go.work.sum ./
COPY bench/go.mod bench/go.sum bench/
COPY cmd/sdevents/go.mod cmd/sdevents/go.sum cmd/sdevents/
COPY deploy/go.mod deploy/go.sum deploy/
COPY e2e/go.mod e2e/go.sum e2e/
COPY pkg/go.mod pkg/go.sum pkg/
COPY services/aggregator/go.mod services/aggregator/go.sum services/aggregator/
COPY services/archiver/go.mod services/archiver/go.sum services/archiver/
COPY services/console/go.mod services/console/go.sum services/console/
COPY services/ingress/go.mod services/ingress/go.sum services/ingress/
COPY services/quota/go.mod services/quota/go.sum services/quota/
COPY services/simulator/go.mod services/simulator/go.sum services/simulator/
COPY streams/go.mod streams/go.sum streams/
RUN go mod download

COPY . .
# The build's identity, stamped as `make build` stamps it (sdevents version,
# the first log line, sdevents_build_info); the context has no .git:
#   docker build --build-arg VERSION=$(git describe --tags --always --dirty) \
#     --build-arg REVISION=$(git rev-parse HEAD) --build-arg BUILD_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ) .
ARG VERSION=""
ARG REVISION=""
ARG BUILD_DATE=""
RUN --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags="-s -w -X main.version=${VERSION} -X main.revision=${REVISION} -X main.buildDate=${BUILD_DATE}" -o /sdevents ./cmd/sdevents && \
    go build -trimpath -ldflags='-s -w' -o /healthcheck ./deploy/cmd/healthcheck

# distroless/static: CA certificates, tzdata and /etc/passwd, no shell, no libc.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /sdevents /sdevents
# The compose health check (there is no shell, curl or wget in this image).
COPY --from=build /healthcheck /healthcheck
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/sdevents"]
