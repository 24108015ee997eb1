module github.com/churnwatch/churnwatch/services/rules

go 1.26

require (
	github.com/churnwatch/churnwatch/proto/gen/go v0.0.0
	github.com/churnwatch/churnwatch/services/platform v0.0.0
)

require gopkg.in/yaml.v3 v3.0.1 // indirect

replace (
	github.com/churnwatch/churnwatch/proto/gen/go => ../../proto/gen/go
	github.com/churnwatch/churnwatch/services/platform => ../platform
)
