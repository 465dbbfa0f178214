package ebpf

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics is the probes' Prometheus collector. The kernel's counters live in a per-CPU map and
// are read at scrape time; the reader's are atomics.
type metrics struct {
	p          *Probes
	read       atomic.Uint64
	readByKind [kindMax + 1]atomic.Uint64
	dropped    atomic.Uint64
	decodeErr  atomic.Uint64

	submittedDesc, reserveDesc, readDesc, droppedDesc, decodeDesc, watchedDesc *prometheus.Desc
}

func newMetrics(p *Probes) *metrics {
	return &metrics{
		p: p,
		submittedDesc: prometheus.NewDesc("mcpwatch_ebpf_kernel_events_total",
			"Events the eBPF programs put in the ring buffer.", nil, nil),
		reserveDesc: prometheus.NewDesc("mcpwatch_ebpf_kernel_reserve_failures_total",
			"Events lost in the kernel because the ring buffer was full, by CPU.", []string{"cpu"}, nil),
		readDesc: prometheus.NewDesc("mcpwatch_ebpf_events_read_total",
			"Events read from the ring buffer and queued, by kind.", []string{"kind"}, nil),
		droppedDesc: prometheus.NewDesc("mcpwatch_ebpf_queue_dropped_total",
			"Events read from the ring buffer and dropped because the userspace queue was full.", nil, nil),
		decodeDesc: prometheus.NewDesc("mcpwatch_ebpf_decode_errors_total",
			"Ring buffer records that did not decode, dropped.", nil, nil),
		watchedDesc: prometheus.NewDesc("mcpwatch_ebpf_watched_cgroups",
			"Cgroups in the kernel's watch map.", nil, nil),
	}
}

// Describe implements [prometheus.Collector].
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.submittedDesc, m.reserveDesc, m.readDesc, m.droppedDesc, m.decodeDesc, m.watchedDesc} {
		ch <- d
	}
}

// Collect implements [prometheus.Collector]. When the kernel map cannot be read (the probes are
// closed) the kernel series are left out.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	if sub, err := m.p.perCPU(statSubmitted); err == nil {
		var total uint64
		for _, v := range sub {
			total += v
		}
		ch <- prometheus.MustNewConstMetric(m.submittedDesc, prometheus.CounterValue, float64(total))
	}
	if fail, err := m.p.perCPU(statReserveFailed); err == nil {
		for cpu, v := range fail {
			ch <- prometheus.MustNewConstMetric(m.reserveDesc, prometheus.CounterValue, float64(v), cpuLabel(cpu))
		}
	}
	for k := KindExec; k <= kindMax; k++ {
		ch <- prometheus.MustNewConstMetric(m.readDesc, prometheus.CounterValue, float64(m.readByKind[k].Load()), k.String())
	}
	ch <- prometheus.MustNewConstMetric(m.droppedDesc, prometheus.CounterValue, float64(m.dropped.Load()))
	ch <- prometheus.MustNewConstMetric(m.decodeDesc, prometheus.CounterValue, float64(m.decodeErr.Load()))
	ch <- prometheus.MustNewConstMetric(m.watchedDesc, prometheus.GaugeValue, float64(m.p.Watching()))
}
