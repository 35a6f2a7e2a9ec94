package proxy

import (
	"container/list"
	"time"
)

// binding is a sticky session's proxy.
type binding struct {
	key     string
	session string
	group   string
	e       *entry
	since   time.Time
	expires time.Time
	elem    *list.Element
}

// sessions is the sticky session table, bounded, oldest binding first.
// It is guarded by the pool's lock.
type sessions struct {
	byKey map[string]*binding
	order list.List // of *binding, oldest first (= expiring first)
}

func newSessions() sessions { return sessions{byKey: map[string]*binding{}} }

func (s *sessions) lookup(key string) *binding { return s.byKey[key] }

func (s *sessions) len() int { return len(s.byKey) }

// bind binds a session to e for ttl, forgetting the expired bindings
// (all bindings share one ttl, so they expire oldest first), then the
// oldest ones while the table holds max.
func (s *sessions) bind(key, session, group string, e *entry, now time.Time, ttl time.Duration, max int) *binding {
	for el := s.order.Front(); el != nil && !now.Before(el.Value.(*binding).expires); el = s.order.Front() {
		s.unbind(el.Value.(*binding))
	}
	for len(s.byKey) >= max && s.order.Len() > 0 {
		s.unbind(s.order.Front().Value.(*binding))
	}
	b := &binding{key: key, session: session, group: group, e: e, since: now, expires: now.Add(ttl)}
	b.elem = s.order.PushBack(b)
	s.byKey[key] = b
	e.bound++
	return b
}

// unbind forgets b, once: a binding already forgotten is left alone.
func (s *sessions) unbind(b *binding) {
	if b.elem == nil {
		return
	}
	s.order.Remove(b.elem)
	b.elem = nil
	if s.byKey[b.key] == b {
		delete(s.byKey, b.key)
	}
	b.e.bound--
}

// unbindIf is unbind, named for the release path: the binding may have
// moved on already.
func (s *sessions) unbindIf(b *binding) { s.unbind(b) }

// each calls f for every binding, oldest first.
func (s *sessions) each(f func(*binding)) {
	for el := s.order.Front(); el != nil; el = el.Next() {
		f(el.Value.(*binding))
	}
}
