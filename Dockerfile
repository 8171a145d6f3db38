# lanyard: one static binary (no cgo) on a small base image.
# Build:  docker build -t lanyard .
# The tests' aws_signing_helper (cgo) is not part of this image.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/lanyard ./cmd/lanyard && \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/lanyard-agent ./cmd/lanyard-agent && \
    mkdir -p /out/data

# An example host (docker-compose's "host" service): a shell, CA
# certificates and lanyard for enroll + agent.
FROM debian:bookworm-slim AS host
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/lanyard /out/lanyard-agent /usr/local/bin/

# The default target is the CA image.
FROM gcr.io/distroless/static-debian12:nonroot AS ca
COPY --from=build /out/lanyard /usr/local/bin/lanyard
# The data folder belongs to the unprivileged user, so a named volume
# mounted there (docker-compose) starts out writable by it.
COPY --from=build --chown=nonroot:nonroot /out/data /var/lib/lanyard
WORKDIR /var/lib/lanyard
EXPOSE 8443
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/lanyard"]
CMD ["serve", "--config", "/etc/lanyard/lanyard.yaml"]
