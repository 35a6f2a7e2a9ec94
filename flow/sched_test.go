package flow

import "runtime"

func runtimeGosched() { runtime.Gosched() }
