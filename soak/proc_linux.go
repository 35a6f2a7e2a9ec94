package soak

import "syscall"

// procAttr makes a member die with the soak (SIGKILL when its parent
// thread exits), so an interrupted soak leaves no orphan behind.
func procAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }
