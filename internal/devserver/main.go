package devserver

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// ErrUsage marks command-line errors (exit status 2).
var ErrUsage = errors.New("usage")

// UIFunc serves a view of the emulator on addr and returns its URL. The
// emulator cannot import the web view (it depends on nothing of the agent),
// so the command line passes it in.
type UIFunc func(ctx context.Context, s *Server, addr string) (url string, err error)

// Main runs `goagent devserver [--addr A] [--org O] [--pool P]… [--plain]
// [--dir D] [--ui [--ui-addr A]]`: it starts the emulator, prints the
// environment an agent needs (AZP_URL, SSL_CERT_FILE, AZP_TOKEN, AZP_POOL)
// and serves until ctx ends. With ui set, --ui also serves the live view.
func Main(ctx context.Context, args []string, stdout io.Writer, ui UIFunc) error {
	fs := flag.NewFlagSet("devserver", flag.ContinueOnError)
	fs.SetOutput(stdout)
	var o Options
	var pools poolList
	fs.StringVar(&o.Addr, "addr", "127.0.0.1:0", "listen address")
	fs.StringVar(&o.Org, "org", "goagent", "organization name (first URL path segment)")
	fs.Var(&pools, "pool", "agent pool name (repeat or comma-separate for several; default Default)")
	fs.BoolVar(&o.PlainHTTP, "plain", false, "serve plain HTTP instead of HTTPS")
	fs.StringVar(&o.Dir, "dir", "", "directory for ca.pem (default: a temporary directory removed on exit)")
	var withUI bool
	var uiAddr string
	if ui != nil {
		fs.BoolVar(&withUI, "ui", false, "serve the live web view of runs")
		fs.StringVar(&uiAddr, "ui-addr", "", "where the web view listens (default 127.0.0.1:0)")
	}
	fs.Usage = func() {
		fmt.Fprintln(stdout, "usage: goagent devserver [--addr 127.0.0.1:0] [--org goagent] [--pool Default] [--plain] [--dir DIR] [--ui [--ui-addr A]]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return fmt.Errorf("devserver: %w: %v", ErrUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("devserver: %w: unexpected argument %q", ErrUsage, fs.Arg(0))
	}
	o.Pools = pools
	s, err := Start(ctx, o)
	if err != nil {
		return err
	}
	defer s.Close()
	fmt.Fprintf(stdout, "AZP_URL=%s\n", s.URL())
	if s.CAFile() != "" {
		fmt.Fprintf(stdout, "SSL_CERT_FILE=%s\n", s.CAFile())
	}
	fmt.Fprintf(stdout, "AZP_TOKEN=%s\n", s.PAT())
	fmt.Fprintf(stdout, "AZP_POOL=%s\n", s.opts.Pools[0])
	if withUI || uiAddr != "" {
		u, err := ui(ctx, s, uiAddr)
		if err != nil {
			return fmt.Errorf("devserver: start the web view: %w", err)
		}
		fmt.Fprintf(stdout, "# web view: %s\n", u)
	}
	fmt.Fprintln(stdout, "# the emulator serves until interrupted")
	select {
	case <-ctx.Done():
	case <-s.Done():
	}
	return s.Close()
}

type poolList []string

func (p *poolList) String() string { return strings.Join(*p, ",") }

func (p *poolList) Set(v string) error {
	for _, name := range strings.Split(v, ",") {
		if name = strings.TrimSpace(name); name != "" {
			*p = append(*p, name)
		}
	}
	return nil
}
