package rules

import (
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/expr-lang/expr/vm"
)

// Key is a compiled order_by: an expression over a callback whose value names the lane the
// callback is delivered in (`GroupId ?? (From_Account + ":" + To_Account)`, one lane per
// conversation). Its environment is the one of when. Safe for concurrent use.
type Key struct {
	program  *vm.Program
	needText bool
}

// CompileKey compiles an order_by. The error is a *CompileError with Field "order_by" and
// the position inside src.
func CompileKey(src string) (*Key, error) {
	p, err := compileExpr(src)
	if err != nil {
		return nil, exprError("order_by", err)
	}
	ids, _ := ParseIdentifiers(src)
	return &Key{program: p, needText: slices.Contains(ids, "text")}, nil
}

// Eval returns the key of ev: a string as it is, a number in decimal (integers exactly).
// Any other value (nil for a field the callback lacks, a boolean, a list, an object) is an
// error, and so is a failure at run time: the caller then uses the fallback lane.
func (k *Key) Eval(ev *Event) (string, error) {
	m := vms.Get().(*vm.VM)
	out, err := m.Run(k.program, ev.environment(k.needText))
	vms.Put(m)
	if err != nil {
		return "", fmt.Errorf("order_by: %w", err)
	}
	switch v := out.(type) {
	case string:
		return v, nil
	case int64:
		return strconv.FormatInt(v, 10), nil
	case int:
		return strconv.Itoa(v), nil
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return "", fmt.Errorf("order_by: value %v is not a usable number", v)
		}
		return strconv.FormatFloat(v, 'f', -1, 64), nil
	case nil:
		return "", fmt.Errorf("order_by: value is nil (a field the callback does not carry?)")
	default:
		return "", fmt.Errorf("order_by: value of type %T: want a string or a number", out)
	}
}
