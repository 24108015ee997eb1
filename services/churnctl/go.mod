module github.com/churnwatch/churnwatch/services/churnctl

go 1.26

require (
	github.com/churnwatch/churnwatch/proto/gen/go v0.0.0
	github.com/churnwatch/churnwatch/services/platform v0.0.0
	github.com/churnwatch/churnwatch/services/ingester v0.0.0
	github.com/churnwatch/churnwatch/services/rules v0.0.0
	github.com/churnwatch/churnwatch/services/alerts v0.0.0
)

replace (
	github.com/churnwatch/churnwatch/proto/gen/go => ../../proto/gen/go
	github.com/churnwatch/churnwatch/services/platform => ../platform
	github.com/churnwatch/churnwatch/services/ingester => ../ingester
	github.com/churnwatch/churnwatch/services/rules => ../rules
	github.com/churnwatch/churnwatch/services/alerts => ../alerts
)
