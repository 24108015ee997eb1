// Package web holds the console's built single-page app (dist/, committed
// like the generated protobuf; `make console` rebuilds it from the
// TypeScript sources here).
package web

import (
	"embed"
	"io/fs"
)

//go:embed dist
var dist embed.FS

// Dist is the built bundle: index.html at its root, hashed files under
// assets/.
func Dist() fs.FS {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		panic(err) // dist is embedded at build time
	}
	return sub
}
