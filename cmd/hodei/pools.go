package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/hodei-ci/hodei/internal/cli"
	"github.com/hodei-ci/hodei/internal/client"
)

func poolsCmd(args []string) int {
	fs := flags("pools", "[flags]", `
List the worker pools of a server (its --pools file): how many workers each
has and in which state, its min and max, the queued jobs waiting for it
(demand), the state of its provider's circuit breaker (closed: working;
open: the provider keeps failing and is not called for a while) and, when
an autoscaler runs, how many workers it expects the pool to need and what
the pool's workers have cost since the server started (worker-hours, of
which idle, and cost_per_hour × worker-hours).

Example:
  hodei pools --server http://ci.example.com:8080`)
	server := addServerFlag(fs)
	asJSON := addJSONFlag(fs)
	c, code, ok := clientNoArgs(fs, args, server)
	if !ok {
		return code
	}
	return callAPI("pools", *asJSON, func(ctx context.Context) (client.PoolList, error) { return c.Pools(ctx) },
		func(out client.PoolList) int {
			if len(out.Pools) == 0 {
				fmt.Println("no pools (start the server with --pools FILE)")
				return exitOK
			}
			rows := make([][]string, len(out.Pools))
			for i, p := range out.Pools {
				forecast := "-"
				if p.Forecast != nil {
					forecast = strconv.Itoa(*p.Forecast)
				}
				circuit := p.Circuit
				if p.LastError != "" && p.Circuit != "closed" {
					circuit += " (" + p.LastError + ")"
				}
				hours, cost := "-", "-"
				if a := p.Account; a != nil {
					hours = fmt.Sprintf("%.1f (%.1f idle)", a.WorkerHours, a.IdleWorkerHours)
					cost = fmt.Sprintf("%.2f", a.Cost)
				}
				size := strconv.Itoa(p.Size)
				if p.Adopted > 0 {
					size += fmt.Sprintf(" (%d adopted)", p.Adopted)
				}
				kind := p.Provider
				if p.Ephemeral {
					kind += ", ephemeral"
				}
				rows[i] = []string{
					p.Name, kind,
					size,
					fmt.Sprintf("%d/%d", p.Min, p.Max),
					fmt.Sprintf("%d/%d/%d/%d", p.Pending, p.Idle, p.Busy, p.Draining),
					strconv.Itoa(p.Demand),
					forecast,
					hours, cost,
					circuit,
				}
			}
			if err := cli.Table(os.Stdout, []string{"POOL", "PROVIDER", "SIZE", "MIN/MAX", "PENDING/IDLE/BUSY/DRAINING", "DEMAND", "FORECAST", "WORKER-HOURS", "COST", "PROVIDER STATE"}, rows); err != nil {
				return fail("pools", err)
			}
			for _, d := range out.Unplaceable {
				req := fmt.Sprintf("cpu %dm, memory %s", d.CPUMilli, cli.FormatBytes(d.Memory))
				if d.GPU > 0 {
					req += fmt.Sprintf(", gpu %d", d.GPU)
				}
				if len(d.Labels) > 0 {
					req += ", labels " + strings.Join(d.Labels, ",")
				}
				fmt.Printf("%d queued jobs fit no worker and no pool (%s): they wait for an agent that fits\n", d.Jobs, req)
			}
			return exitOK
		})
}
