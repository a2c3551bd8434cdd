package cache

import (
	"container/list"
	"sync"
	"sync/atomic"
)

// lru is a map bounded by the total size of its values that evicts the
// least recently used entries, approximately: a hit only marks its entry
// used (under the read lock, so hits do not wait for each other), and
// eviction gives a used entry a second chance, moving it to the front
// unmarked, instead of reordering the list on every hit (the CLOCK
// algorithm).
type lru struct {
	mu      sync.RWMutex
	max     int64
	size    int64
	ll      *list.List
	items   map[string]*list.Element
	onEvict func(key string)
}

type lruItem struct {
	key  string
	val  *entry
	used atomic.Bool // hit since it last reached the back of the list
}

func newLRU(maxBytes int64, onEvict func(string)) *lru {
	return &lru{max: maxBytes, ll: list.New(), items: map[string]*list.Element{}, onEvict: onEvict}
}

func (c *lru) get(key string) (*entry, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	el, ok := c.items[key]
	if !ok {
		return nil, false
	}
	it := el.Value.(*lruItem)
	if !it.used.Load() {
		it.used.Store(true)
	}
	return it.val, true
}

func (c *lru) put(key string, e *entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e.size() > c.max {
		return // larger than the whole cache: not cached
	}
	if el, ok := c.items[key]; ok {
		old := el.Value.(*lruItem)
		c.size += e.size() - old.val.size()
		old.val = e
		c.ll.MoveToFront(el)
	} else {
		c.items[key] = c.ll.PushFront(&lruItem{key: key, val: e})
		c.size += e.size()
	}
	for c.size > c.max {
		back := c.ll.Back()
		it := back.Value.(*lruItem)
		if it.used.Load() {
			// A second chance; every pass clears a mark, so the loop
			// ends.
			it.used.Store(false)
			c.ll.MoveToFront(back)
			continue
		}
		c.ll.Remove(back)
		delete(c.items, it.key)
		c.size -= it.val.size()
		if c.onEvict != nil {
			c.onEvict(it.key)
		}
	}
}

// removeIf removes every entry whose key satisfies match and returns how
// many were removed.
func (c *lru) removeIf(match func(key string, e *entry) bool) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for key, el := range c.items {
		if match(key, el.Value.(*lruItem).val) {
			c.ll.Remove(el)
			delete(c.items, key)
			c.size -= el.Value.(*lruItem).val.size()
			n++
		}
	}
	return n
}

func (c *lru) bytes() int64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.size
}
