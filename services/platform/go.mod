module github.com/churnwatch/churnwatch/services/platform

go 1.26

require github.com/churnwatch/churnwatch/proto/gen/go v0.0.0

replace github.com/churnwatch/churnwatch/proto/gen/go => ../../proto/gen/go
