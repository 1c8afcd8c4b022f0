package bench

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
)

// peapodDriver creates and deletes the benchmark's pods through the API and
// learns where they got from a watch.
type peapodDriver struct {
	c       kubernetes.Interface
	ns      string
	tracker *podTracker
}

func (d *peapodDriver) create(ctx context.Context, name string) error {
	_, err := d.c.CoreV1().Pods(d.ns).Create(ctx, nodePod(name), metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create pod %s/%s: %w", d.ns, name, err)
	}
	return nil
}

// remove deletes the pod with its own grace period: the agent stops it and
// then deletes the object, which is when the watch sees it gone.
func (d *peapodDriver) remove(ctx context.Context, name string) error {
	if err := d.c.CoreV1().Pods(d.ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		return fmt.Errorf("delete pod %s/%s: %w", d.ns, name, err)
	}
	return nil
}

func (d *peapodDriver) waitFor(ctx context.Context, names []string, state podState) (map[string]time.Time, error) {
	return d.tracker.waitFor(ctx, names, state)
}

// podTracker records, from watch events, when each pod was first seen
// Running, Ready and deleted: the moment the event arrived, which is when a
// client of the API learns it.
type podTracker struct {
	mu   sync.Mutex
	seen [numStates]map[string]time.Time
	// last describes each pod's latest state, for error messages.
	last map[string]string
	// changed is closed (and replaced) whenever something was recorded.
	changed chan struct{}
	err     error
	w       watch.Interface
	done    chan struct{}
}

func newPodTracker() *podTracker {
	t := &podTracker{last: map[string]string{}, changed: make(chan struct{}), done: make(chan struct{})}
	for i := range t.seen {
		t.seen[i] = map[string]time.Time{}
	}
	return t
}

// startPodTracker watches the benchmark's pods in ns from now on. The watch
// resumes by itself when the server ends it.
func startPodTracker(ctx context.Context, c kubernetes.Interface, ns string) (*podTracker, error) {
	sel := labelApp + "=" + podsApp
	l, err := c.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel, Limit: 1})
	if err != nil {
		return nil, fmt.Errorf("list pods in %s: %w", ns, err)
	}
	lw := &cache.ListWatch{WatchFunc: func(o metav1.ListOptions) (watch.Interface, error) {
		o.LabelSelector = sel
		return c.CoreV1().Pods(ns).Watch(ctx, o)
	}}
	w, err := watchtools.NewRetryWatcher(l.ResourceVersion, lw)
	if err != nil {
		return nil, fmt.Errorf("watch pods in %s: %w", ns, err)
	}
	t := newPodTracker()
	t.w = w
	go func() {
		defer close(t.done)
		for ev := range w.ResultChan() {
			t.observe(ev, time.Now())
		}
		t.fail(fmt.Errorf("the watch on pods in %s ended", ns))
	}()
	return t, nil
}

func (t *podTracker) stop() {
	t.w.Stop()
	<-t.done
}

func (t *podTracker) fail(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err == nil {
		t.err = err
	}
	t.notifyLocked()
}

func (t *podTracker) notifyLocked() {
	close(t.changed)
	t.changed = make(chan struct{})
}

// observe records what ev, which arrived at at, tells.
func (t *podTracker) observe(ev watch.Event, at time.Time) {
	if ev.Type == watch.Error {
		t.fail(fmt.Errorf("watch error: %v", ev.Object))
		return
	}
	pod, ok := ev.Object.(*corev1.Pod)
	if !ok {
		return // a bookmark
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	mark := func(s podState) {
		if _, ok := t.seen[s][pod.Name]; !ok {
			t.seen[s][pod.Name] = at
		}
	}
	switch ev.Type {
	case watch.Deleted:
		mark(stateGone)
		t.last[pod.Name] = "deleted"
	case watch.Added, watch.Modified:
		if pod.Status.Phase == corev1.PodRunning {
			mark(stateRunning)
		}
		if podReady(pod) {
			mark(stateReady)
		}
		t.last[pod.Name] = describePod(pod)
	}
	t.notifyLocked()
}

func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// describePod is a pod's state in a few words: its phase, and why its
// containers wait or ended, for a timeout's error message.
func describePod(pod *corev1.Pod) string {
	s := string(pod.Status.Phase)
	if s == "" {
		s = "no phase"
	}
	if pod.Spec.NodeName == "" {
		s += ", not scheduled"
	}
	if pod.DeletionTimestamp != nil {
		s += ", terminating"
	}
	withMessage := func(s, msg string) string {
		if msg == "" {
			return s
		}
		return s + " (" + msg + ")"
	}
	for _, cs := range pod.Status.ContainerStatuses {
		switch {
		case cs.State.Waiting != nil:
			s += withMessage(fmt.Sprintf(", %s waiting: %s", cs.Name, cs.State.Waiting.Reason), cs.State.Waiting.Message)
		case cs.State.Terminated != nil:
			s += withMessage(fmt.Sprintf(", %s terminated: %s, exit code %d", cs.Name, cs.State.Terminated.Reason,
				cs.State.Terminated.ExitCode), cs.State.Terminated.Message)
		}
	}
	for _, c := range pod.Status.Conditions {
		if c.Status != corev1.ConditionTrue && c.Message != "" {
			s += fmt.Sprintf(", %s: %s", c.Type, c.Message)
		}
	}
	return s
}

// waitFor blocks until every named pod reached state and returns when each
// did. On timeout it says which pods did not and where they were.
func (t *podTracker) waitFor(ctx context.Context, names []string, state podState) (map[string]time.Time, error) {
	for {
		t.mu.Lock()
		out, missing := splitSeen(names, t.seen[state])
		err, changed := t.err, t.changed
		t.mu.Unlock()
		if len(missing) == 0 {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return out, fmt.Errorf("%d of %d pods not %s: %s: %w", len(missing), len(names), state, t.describe(missing), ctx.Err())
		}
	}
}

// describe tells where the first few of pods were last seen.
func (t *podTracker) describe(pods []string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var desc []string
	for i, n := range pods {
		if i == 5 {
			desc = append(desc, fmt.Sprintf("and %d more", len(pods)-5))
			break
		}
		last := t.last[n]
		if last == "" {
			last = "never seen"
		}
		desc = append(desc, n+": "+last)
	}
	return strings.Join(desc, "; ")
}

// splitSeen returns when each of names was seen, and the names not seen yet.
func splitSeen(names []string, seen map[string]time.Time) (map[string]time.Time, []string) {
	out := make(map[string]time.Time, len(names))
	var missing []string
	for _, n := range names {
		if at, ok := seen[n]; ok {
			out[n] = at
		} else {
			missing = append(missing, n)
		}
	}
	return out, missing
}
