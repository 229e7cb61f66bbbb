package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	luajson "layeh.com/gopher-json"
)

// argoJudge runs a health.lua the way Argo CD runs one from argocd-cm (util/lua in argo-cd):
// gopher-lua (Lua 5.1) with only the package, base and table libraries and an os library cut
// down to os.time and os.date (resource.customizations.useOpenLibs is off by default); the
// object in the global `obj`; one second to finish; the returned table read as
// {status, message}, an unknown status turned into Unknown.
type argoJudge struct {
	script string
}

// The statuses Argo CD accepts from a script.
var argoStatuses = map[string]bool{
	"Unknown": true, "Progressing": true, "Suspended": true, "Healthy": true, "Degraded": true, "Missing": true,
}

func (j *argoJudge) judge(obj *unstructured.Unstructured) Verdict {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.OsLibName, openSafeOs},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), Protect: true}, lua.LString(lib.name)); err != nil {
			return Verdict{Error: err.Error()}
		}
	}
	l.PreloadModule(lua.OsLibName, func(l *lua.LState) int {
		l.Push(l.SetFuncs(l.NewTable(), safeOsFuncs()))
		return 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj.Object))
	if err := l.DoString(j.script); err != nil {
		return Verdict{Error: err.Error()}
	}
	ret := l.Get(-1)
	if ret.Type() != lua.LTTable {
		return Verdict{Error: fmt.Sprintf("expect table output from Lua script, not %s", ret.Type())}
	}
	encoded, err := luajson.Encode(ret)
	if err != nil {
		return Verdict{Error: err.Error()}
	}
	var hs Verdict
	if err := json.Unmarshal(encoded, &hs); err != nil {
		return Verdict{Error: err.Error()}
	}
	if !argoStatuses[hs.Status] {
		return Verdict{Status: "Unknown", Message: "Lua returned an invalid health status"}
	}
	return hs
}

func openSafeOs(l *lua.LState) int {
	l.Push(l.RegisterModule(lua.OsLibName, safeOsFuncs()))
	return 1
}

// safeOsFuncs are gopher-lua's own os.time and os.date (Argo CD's safe copies of them), and
// nothing else of os.
func safeOsFuncs() map[string]lua.LGFunction {
	full := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer full.Close()
	lua.OpenOs(full)
	funcs := map[string]lua.LGFunction{}
	for _, name := range []string{"time", "date"} {
		funcs[name] = full.GetField(full.GetGlobal(lua.OsLibName), name).(*lua.LFunction).GFunction
	}
	return funcs
}

// toLua converts an object the way Argo CD does: numbers become Lua numbers, maps and lists
// become tables, null becomes nil.
func toLua(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case []any:
		t := l.CreateTable(len(v), 0)
		for _, item := range v {
			t.Append(toLua(l, item))
		}
		return t
	case map[string]any:
		t := l.CreateTable(0, len(v))
		for key, item := range v {
			t.RawSetH(lua.LString(key), toLua(l, item))
		}
		return t
	}
	return lua.LNil
}
