package scheduler

// treap is an ordered set of the workers of one group, keyed by (k1, k2),
// where each subtree also knows the largest free cpu, memory and gpu of its
// workers. That augmentation is what makes placement cheap: first finds the
// first worker in key order at or after a lower bound whose free capacity
// covers a request, skipping every subtree whose maxima cannot cover it, so
// a best-fit or first-fit search costs O(log n) in practice instead of a scan
// of the group; and the root's maxima reject a request that fits nowhere in
// the group in O(1).
//
// Nodes live in a slice indexed by the worker's local index in its group;
// priorities come from a fixed hash of that index so the shape of the tree,
// and therefore every decision, is deterministic.
type treap struct {
	n    []tnode
	root int32
}

type tnode struct {
	l, r   int32
	pri    uint32
	fg, mg int32 // own free gpu, subtree max free gpu
	k1, k2 int64
	fc, fm int64 // own free cpu and memory
	mc, mm int64 // subtree maxima
}

const nilNode int32 = -1

func newTreap() *treap { return &treap{root: nilNode} }

func hash32(x uint64) uint32 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return uint32(x ^ (x >> 31))
}

// ensure makes room for node i.
func (t *treap) ensure(i int32) {
	for int32(len(t.n)) <= i {
		k := len(t.n)
		t.n = append(t.n, tnode{l: nilNode, r: nilNode, pri: hash32(uint64(k))})
	}
}

func (t *treap) pull(i int32) {
	n := &t.n[i]
	mc, mm, mg := n.fc, n.fm, n.fg
	if n.l != nilNode {
		c := &t.n[n.l]
		mc, mm, mg = max(mc, c.mc), max(mm, c.mm), max(mg, c.mg)
	}
	if n.r != nilNode {
		c := &t.n[n.r]
		mc, mm, mg = max(mc, c.mc), max(mm, c.mm), max(mg, c.mg)
	}
	n.mc, n.mm, n.mg = mc, mm, mg
}

func (t *treap) less(i int32, k1, k2 int64) bool {
	n := &t.n[i]
	return n.k1 < k1 || (n.k1 == k1 && n.k2 < k2)
}

// split returns the trees of the keys below (k1, k2) and of the others.
func (t *treap) split(i int32, k1, k2 int64) (int32, int32) {
	if i == nilNode {
		return nilNode, nilNode
	}
	if t.less(i, k1, k2) {
		a, b := t.split(t.n[i].r, k1, k2)
		t.n[i].r = a
		t.pull(i)
		return i, b
	}
	a, b := t.split(t.n[i].l, k1, k2)
	t.n[i].l = b
	t.pull(i)
	return a, i
}

func (t *treap) merge(a, b int32) int32 {
	if a == nilNode {
		return b
	}
	if b == nilNode {
		return a
	}
	if t.n[a].pri > t.n[b].pri {
		t.n[a].r = t.merge(t.n[a].r, b)
		t.pull(a)
		return a
	}
	t.n[b].l = t.merge(a, t.n[b].l)
	t.pull(b)
	return b
}

// insert adds node i with the given key and free capacity.
func (t *treap) insert(i int32, k1, k2 int64, free Resources) {
	t.ensure(i)
	n := &t.n[i]
	n.l, n.r = nilNode, nilNode
	n.k1, n.k2 = k1, k2
	n.fc, n.fm, n.fg = free.CPUMilli, free.Memory, int32(free.GPU)
	n.mc, n.mm, n.mg = n.fc, n.fm, n.fg
	t.root = t.insertAt(t.root, i)
}

func (t *treap) insertAt(at, i int32) int32 {
	if at == nilNode {
		return i
	}
	if t.n[i].pri > t.n[at].pri {
		a, b := t.split(at, t.n[i].k1, t.n[i].k2)
		t.n[i].l, t.n[i].r = a, b
		t.pull(i)
		return i
	}
	if t.less(i, t.n[at].k1, t.n[at].k2) {
		t.n[at].l = t.insertAt(t.n[at].l, i)
	} else {
		t.n[at].r = t.insertAt(t.n[at].r, i)
	}
	t.pull(at)
	return at
}

// remove takes node i (which must be in the tree) out.
func (t *treap) remove(i int32) {
	t.root = t.removeAt(t.root, i)
	t.n[i].l, t.n[i].r = nilNode, nilNode
}

func (t *treap) removeAt(at, i int32) int32 {
	if at == i {
		return t.merge(t.n[i].l, t.n[i].r)
	}
	if at == nilNode {
		return nilNode // not found: a bug upstream, but keep the tree intact
	}
	if t.less(i, t.n[at].k1, t.n[at].k2) {
		t.n[at].l = t.removeAt(t.n[at].l, i)
	} else {
		t.n[at].r = t.removeAt(t.n[at].r, i)
	}
	t.pull(at)
	return at
}

// covers reports whether the subtree maxima of i could hold the request.
func (t *treap) covers(i int32, r *Resources) bool {
	n := &t.n[i]
	return n.mc >= r.CPUMilli && n.mm >= r.Memory && int(n.mg) >= r.GPU
}

// fitsAnywhere reports whether some worker of the tree has room for r.
func (t *treap) fitsAnywhere(r *Resources) bool {
	return t.root != nilNode && t.covers(t.root, r)
}

// first returns the node with the smallest key whose k1 >= lo and whose free
// capacity covers r, or nilNode.
func (t *treap) first(i int32, lo int64, r *Resources) int32 {
	for i != nilNode {
		if !t.covers(i, r) {
			return nilNode
		}
		n := &t.n[i]
		if n.k1 < lo {
			i = n.r
			continue
		}
		if res := t.first(n.l, lo, r); res != nilNode {
			return res
		}
		if n.fc >= r.CPUMilli && n.fm >= r.Memory && int(n.fg) >= r.GPU {
			return i
		}
		i = n.r
	}
	return nilNode
}
