// Command changeprop executes MediaWiki's job queue and propagates changes
// between services: it reads events from Kafka, matches them against rules
// and sends the requests the rules describe.
//
//	changeprop run -config FILE       run the service until SIGTERM/SIGINT
//	changeprop validate -config FILE  check a config, printing every problem
//	changeprop dev                    everything on this machine: an embedded
//	                                  Kafka-protocol cluster, a simulated job
//	                                  runner, sample rules, live progress
package main

import (
	"fmt"
	"io"
	"os"
)

const usage = `usage: changeprop <command> [flags]

commands:
  run -config FILE       run the service until SIGTERM/SIGINT, then drain, commit and exit 0
  validate -config FILE  check a config; exit 1 printing every problem with its path
  dev [-jobs N]          embedded Kafka-protocol cluster, simulated job runner, sample rules,
                         live progress; with -jobs, stop after N jobs are done
  replay -config FILE    re-inject error events into their topics, once (-rule -status -since -until -rate -dry-run)
  loadgen -brokers B     produce realistic job events into any Kafka (-rate N|0=max -n N -duration D -topics T -seed S)
  jobrunner-sim          a RunSingleJob.php simulator (-listen ADDR -latency DIST -error-rate F -readonly-rate F)

"-config -" reads standard input. CHANGEPROP_KAFKA_BROKERS and CHANGEPROP_REDIS_ADDR
override the file. Run "changeprop <command> -h" for a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes one command and returns the process exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], stdin, stderr)
	case "validate":
		return cmdValidate(args[1:], stdin, stdout, stderr)
	case "dev":
		return cmdDev(args[1:], stdout, stderr)
	case "replay":
		return cmdReplay(args[1:], stdin, stdout, stderr)
	case "loadgen":
		return cmdLoadgen(args[1:], stdout, stderr)
	case "jobrunner-sim":
		return cmdJobRunnerSim(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "changeprop: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}
