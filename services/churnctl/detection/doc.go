// Package detection measures the rules back-test (services/rules/backtest)
// on the simulated bank: the detection targets of docs/detection.md, the
// bound an ideal detector puts on how early any activity test can warn,
// that the input's order does not change the alerts, and the back-test's
// benchmarks. It holds only tests: they need churnctl's simulator, and as
// tests of package backtest they would make the rules module require
// churnctl.
package detection
