package pipeline

import (
	"fmt"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// errf records a problem at n's line.
func (c *compiler) errf(n *yaml.Node, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	if len(c.errs) < maxErrors {
		c.errs = append(c.errs, &Error{Line: line, Msg: fmt.Sprintf(format, args...)})
	}
}

// pair is one key/value of a mapping.
type pair struct {
	key   string
	kn, v *yaml.Node
}

// pairs returns a mapping's entries in file order, reporting non-scalar and
// duplicate keys (yaml.v3 does not reject duplicates when decoding to nodes;
// the service does).
func (c *compiler) pairs(n *yaml.Node, where string) []pair {
	if n.Kind != yaml.MappingNode {
		c.errf(n, "expected a mapping %s, found %s", where, kindName(n))
		return nil
	}
	out := make([]pair, 0, len(n.Content)/2)
	seen := make(map[string]bool, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			c.errf(k, "a key %s must be a plain string, found %s", where, kindName(k))
			continue
		}
		if seen[k.Value] {
			c.errf(k, "duplicate key %q %s", k.Value, where)
			continue
		}
		seen[k.Value] = true
		out = append(out, pair{key: k.Value, kn: k, v: v})
	}
	return out
}

// str returns a scalar's text. YAML null (an empty value) is "". Booleans
// and numbers keep their source text, as the service treats every scalar as
// a string.
func (c *compiler) str(n *yaml.Node, what string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		c.errf(n, "%s must be a string, found %s", what, kindName(n))
		return "", false
	}
	if n.Tag == "!!null" && (n.Value == "" || n.Value == "~" || strings.EqualFold(n.Value, "null")) {
		return "", true
	}
	return n.Value, true
}

// boolean accepts true/false in any case, as the service does.
func (c *compiler) boolean(n *yaml.Node, what string) (bool, bool) {
	s, ok := c.str(n, what)
	if !ok {
		return false, false
	}
	switch strings.ToLower(s) {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	c.errf(n, "%s must be true or false, found %q", what, s)
	return false, false
}

// count accepts a non-negative integer.
func (c *compiler) count(n *yaml.Node, what string) (int, bool) {
	s, ok := c.str(n, what)
	if !ok {
		return 0, false
	}
	v, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || v < 0 {
		c.errf(n, "%s must be a whole number of 0 or more, found %q", what, s)
		return 0, false
	}
	return v, true
}

// strMap reads a mapping of strings (env:, inputs:).
func (c *compiler) strMap(n *yaml.Node, where string) map[string]string {
	ps := c.pairs(n, where)
	if len(ps) == 0 {
		return nil
	}
	m := make(map[string]string, len(ps))
	for _, p := range ps {
		if p.key == "" {
			c.errf(p.kn, "empty key %s", where)
			continue
		}
		if v, ok := c.str(p.v, fmt.Sprintf("the value of %q %s", p.key, where)); ok {
			m[p.key] = v
		}
	}
	return m
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Value == "" {
			return "an empty value"
		}
		return fmt.Sprintf("%q", n.Value)
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	}
	return "nothing"
}

// screen rejects what the service would evaluate or expand before compiling
// (template expressions, YAML anchors), since compiling around them would
// produce a different pipeline than the service runs. It walks the tree once;
// yaml.v3 bounds nesting depth, so the recursion is bounded too.
func (c *compiler) screen(n *yaml.Node) {
	if n.Anchor != "" {
		c.errf(n, "YAML anchors (&%s) are not supported by Azure Pipelines", n.Anchor)
	}
	switch n.Kind {
	case yaml.AliasNode:
		c.errf(n, "YAML aliases (*%s) are not supported by Azure Pipelines", n.Value)
		return
	case yaml.ScalarNode:
		if strings.Contains(n.Value, "${{") {
			c.errf(n, "template expressions (${{ }}) are not supported by the emulator")
		}
		return
	}
	for _, ch := range n.Content {
		c.screen(ch)
	}
}
