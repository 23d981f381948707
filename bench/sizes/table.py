import re, statistics as st, sys
path = sys.argv[1]
maxrep = int(sys.argv[2]) if len(sys.argv) > 2 else 10**9
rows, order = {}, []
for line in open(path):
    kv = dict(re.findall(r'(\w+)=(\S+)', line))
    if int(kv['rep']) > maxrep: continue
    w = line.split()[2]; v = kv['variant']
    if v not in order: order.append(v)
    rows.setdefault((v, w), []).append(kv)
med = lambda v, w, f: st.median(f(k) for k in rows[(v, w)])
M = lambda k: k / 1024
net = lambda key: (lambda k: M(int(k[key]) - int(k['base_kib'])))
mpu = {'8K-256K': 16, '16K-512K': 16, '16K-1M': 16, '32K-2M': 8, '64K-4M': 4}
n = len(rows[(order[0], 'lifo')])
print(f'Medians of {n} interleaved runs; RSS = VmRSS/VmHWM minus the harness baseline (VmRSS after the precomputed tables are touched, before the first allocation).\n')
hdr = ['variant (pool / arena, MAX_POOL_UNITS)', 'lifo ns', 'churn ns', 'churn peak RSS MiB', 'build+drop ns',
       'RSS after 90% free MiB', 'RSS after re-alloc MiB', 'mapped MiB after free (arenas)',
       'lifo / churn / build CPU ns', 'RSS after build+drop+collect MiB']
print('| ' + ' | '.join(hdr) + ' |'); print('|' + '---|' * len(hdr))
for v in order:
    cells = ['%.2f' % med(v,'lifo',lambda k: float(k['ns_pair'])),
             '%.1f' % med(v,'churn',lambda k: float(k['ns_pair'])),
             '%.1f' % med(v,'churn',net('hwm_kib')),
             '%.1f' % med(v,'build',lambda k: float(k['ns_pair'])),
             '%.1f' % med(v,'frag',net('after_free_kib')),
             '%.1f' % med(v,'frag',net('realloc_kib')),
             '%.1f (%d)' % (med(v,'frag',lambda k: M(int(k['free_mapped_kib']))), med(v,'frag',lambda k: int(k['free_arenas']))),
             '%.2f / %.1f / %.1f' % tuple(med(v,w,lambda k: float(k['cpu_ns_pair'])) for w in ('lifo','churn','build')),
             '%.2f' % med(v,'build',net('after_collect_kib'))]
    label = '%s / %s, %d' % (*v.split('-'), mpu[v])
    if v == '16K-1M': label = '**' + label + ' (current)**'
    if v == '8K-256K': label += ' (MEDIUM_MAX 32 KiB)'
    print('| ' + label + ' | ' + ' | '.join(cells) + ' |')
print('\nSpread (min..max) of wall-clock ns per pair:')
for v in order:
    s = []
    for w in ('lifo','churn','build'):
        xs = [float(k['ns_pair']) for k in rows[(v,w)]]; cs = [float(k['cpu_ns_pair']) for k in rows[(v,w)]]
        s.append('%s %.1f..%.1f (cpu %.1f..%.1f)' % (w, min(xs), max(xs), min(cs), max(cs)))
    print('- %s: %s' % (v, '; '.join(s)))
print('\nOther medians:')
for v in order:
    print('- %s: frag full %.1f MiB net, live after free %.1f MiB, mapped after re-alloc %.1f MiB (%d arenas); churn mapped at end %.1f MiB (%d arenas), churn minor faults %d; build minor faults %d' % (v,
      med(v,'frag',net('full_kib')), med(v,'frag',lambda k: M(int(k['free_live_kib']))),
      med(v,'frag',lambda k: M(int(k['re_mapped_kib']))), med(v,'frag',lambda k: int(k['re_arenas'])),
      med(v,'churn',lambda k: M(int(k['end_mapped_kib']))), med(v,'churn',lambda k: int(k['end_arenas'])),
      med(v,'churn',lambda k: int(k['minflt'])), med(v,'build',lambda k: int(k['minflt']))))
