# syntax=docker/dockerfile:1
# sluice's pipeline command in a small image: built in a Go image, run as
# an unprivileged user in a distroless one (CA certificates, no shell).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath -ldflags="-s -w" -o /out/pipeline ./cmd/pipeline

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/pipeline /usr/local/bin/pipeline
USER nonroot:nonroot
# The metrics listener (run --metrics-addr :9090).
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/pipeline"]
CMD ["run", "--help"]
