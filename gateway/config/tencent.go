package config

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/fanout-gw/fanout/gateway/tencentim"
)

// Tencent is what the receiver checks of each callback.
type Tencent struct {
	Apps         []App
	MaxClockSkew time.Duration
	AllowIPs     []netip.Prefix
	// ExtraCommands are callback commands Fanout does not know yet, which routes may name
	// without an error (Tencent IM adds commands; routing them must keep working).
	ExtraCommands []string
}

// App is one accepted SdkAppid and its callback-auth token (empty: no Sign required).
type App struct {
	SdkAppID string
	Token    Secret
}

// TencentTimeout is how long Tencent IM waits for an answer.
const TencentTimeout = 2 * time.Second

func (t *Tencent) decode(d *decoder, n *yaml.Node, p string, pos *nodes) {
	d.mapping(n, p, map[string]field{
		"apps": func(n *yaml.Node, p string) {
			pos.apps = n
			d.list(n, p, func(_ int, v *yaml.Node, p string) {
				t.Apps = append(t.Apps, d.app(v, p))
				pos.appItems = append(pos.appItems, v)
			})
		},
		"max_clock_skew": d.setDuration(&t.MaxClockSkew, true),
		"allow_ips":      d.setPrefixes(&t.AllowIPs),
		"extra_commands": func(v *yaml.Node, p string) { t.ExtraCommands = d.extraCommands(v, p) },
	})
}

// extraCommands reads tencent.extra_commands: exact command names, each once.
func (d *decoder) extraCommands(n *yaml.Node, p string) []string {
	var names []string
	var items []*yaml.Node
	d.setStrings(&names, &items)(n, p)
	var out []string
	for i, name := range names {
		at, ip := items[i], p
		if n.Kind == yaml.SequenceNode {
			ip = fmt.Sprintf("%s[%d]", p, i)
		}
		switch _, known := tencentim.LookupCommand(name); {
		case name == "" || strings.ContainsAny(name, "*?[\\"):
			d.errorf(at, ip, "want a command name such as Group.CallbackAfterNewThing, got %q (extra_commands are names, not patterns)", name)
		case known:
			d.warnf(at, ip, "%s is a known command: it need not be listed", name)
		case slices.Contains(out, name):
			d.errorf(at, ip, "%s listed twice", name)
		default:
			out = append(out, name)
		}
	}
	return out
}

func (d *decoder) app(n *yaml.Node, p string) App {
	var a App
	var id string
	idOK := true // false when the value could not be read: that is the problem to show
	d.mapping(n, p, map[string]field{
		"sdkappid": func(v *yaml.Node, p string) { id, idOK = d.str(v, p) },
		"token":    d.setSecret(&a.Token),
	})
	if n.Kind == yaml.MappingNode && idOK {
		if v, err := strconv.ParseUint(id, 10, 64); err != nil || v == 0 {
			d.errorf(n, join(p, "sdkappid"), "want the app's SdkAppid, a positive integer such as 1400000000, got %q", id)
		}
	}
	a.SdkAppID = id
	return a
}

// check wants at least one app, each listed once, and returns the SdkAppids, for the
// routes' apps filters.
func (t *Tencent) check(d *decoder, pos *nodes) map[string]bool {
	if len(t.Apps) == 0 {
		at := cmp.Or(pos.apps, pos.tencent, pos.root) // where apps is, or would go
		d.errorf(at, "tencent.apps", "at least one app is required: callbacks from any other SdkAppid are refused")
	}
	apps := map[string]bool{}
	for i, a := range t.Apps {
		if apps[a.SdkAppID] && a.SdkAppID != "" {
			d.errorf(pos.appItems[i], fmt.Sprintf("tencent.apps[%d]", i), "SdkAppid %s listed twice", a.SdkAppID)
		}
		apps[a.SdkAppID] = true
	}
	return apps
}
