// promql parses PromQL expressions with Prometheus' own parser: the alert expressions of the
// chart's PrometheusRule and the queries of its Grafana dashboard. One expression per line on
// stdin ("NAME<TAB>EXPR"); prints each error and exits 1 if any does not parse.
package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"

	"github.com/prometheus/prometheus/promql/parser"
)

func main() {
	scanner := bufio.NewScanner(os.Stdin)
	scanner.Buffer(make([]byte, 1<<20), 1<<20)
	promql := parser.NewParser(parser.Options{})
	bad, n := 0, 0
	for scanner.Scan() {
		name, expr, ok := strings.Cut(scanner.Text(), "\t")
		if !ok {
			continue
		}
		n++
		// Grafana's interval variables are not PromQL; give them a value.
		expr = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m").Replace(expr)
		if _, err := promql.ParseExpr(expr); err != nil {
			fmt.Printf("%s: %v\n  %s\n", name, err, expr)
			bad++
		}
	}
	if err := scanner.Err(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fmt.Printf("promql: %d expressions, %d do not parse\n", n, bad)
	if bad > 0 || n == 0 {
		os.Exit(1)
	}
}
