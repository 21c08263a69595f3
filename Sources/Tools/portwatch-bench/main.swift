import Foundation

// make bench: every figure with its baseline, measured in this one run.
// Writes results/report.md and results/report.json, and a summary on stdout.
// PORTWATCH_BENCH_QUICK=1 runs fewer repeats (a smoke run).

await Bench.main()
