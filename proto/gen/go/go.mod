module github.com/churnwatch/churnwatch/proto/gen/go

go 1.26
