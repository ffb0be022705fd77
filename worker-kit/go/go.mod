module github.com/openim-gateway/openim-gateway/worker-kit/go

go 1.19

require github.com/nats-io/nats.go v1.22.1
