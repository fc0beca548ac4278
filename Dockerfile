# Build: cgo, with the librdkafka that confluent-kafka-go bundles (glibc).
FROM golang:1.27-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=1 go build -trimpath -ldflags='-s -w' -o /out/changeprop ./cmd/changeprop

# Run: glibc, no shell, non-root.
FROM gcr.io/distroless/base-debian12:nonroot
COPY --from=build /out/changeprop /usr/local/bin/changeprop
USER nonroot:nonroot
EXPOSE 7200
ENTRYPOINT ["/usr/local/bin/changeprop", "run"]
CMD ["-config", "/etc/changeprop/config.yaml"]
