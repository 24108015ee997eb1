#!/usr/bin/env python3
"""What an activity.drop-opened alert's customer looks like on the day it fired.

For every alert whose first reason is activity.drop, at its first signal day:
days since the last SALARY, total balance now / 30 days before, the 30 days
before the drop window against the baseline (was the fall already under
way?), the last 15 days against the baseline, and external transfers out in
the last 30 days. Prints the median of each per archetype, so one can see
whether any sign the engine keeps tells a stable customer's absence from a
departure on the day the drop fires.

usage: fire_features.py SIMDIR BACKTEST.json   (SIMDIR from churnctl simulate
       --out, BACKTEST.json from churnctl backtest --labels --json)
"""
import collections, datetime as dt, json, statistics, sys

sim, bt = sys.argv[1], sys.argv[2]
CI = {'DEPOSIT', 'WITHDRAWAL', 'TRANSFER_IN', 'TRANSFER_OUT', 'CARD_PAYMENT', 'SALARY'}
ts = lambda s: dt.datetime.fromisoformat(s.replace('Z', '+00:00')).timestamp()
lab = {d['customerId']: d for d in map(json.loads, open(f'{sim}/labels.ndjson'))}
fired = {}
for d in map(json.loads, open(bt)):
    if 'alertId' in d and d['reasons'][0]['ruleId'] == 'activity.drop':
        fired[d['customerId']] = ts(d['firstSignalAt'])
ev = collections.defaultdict(list)
for d in map(json.loads, open(f'{sim}/events.ndjson')):
    if d['customerId'] in fired:
        ev[d['customerId']].append(d)
rows = collections.defaultdict(list)
for c, t in fired.items():
    es = ev[c]
    day = lambda e: int(ts(e['occurredAt']) // 86400)
    td, f = int(t // 86400), day(es[0])
    cnt = collections.Counter(day(e) for e in es if e['type'] in CI)
    s = lambda a, b: sum(cnt[x] for x in range(a, b))
    nb = min(180, td - 30 - f)
    avg = s(td - 30 - nb, td - 30) * 30 / nb
    sal = [ts(e['occurredAt']) for e in es if e['type'] == 'SALARY' and ts(e['occurredAt']) < t]

    def bal(at):
        acc = {}
        for e in es:
            if ts(e['occurredAt']) > at:
                break
            if 'balanceAfter' in e:
                acc[e['accountId']] = float(e['balanceAfter'])
        return sum(acc.values())
    b30 = bal(t - 30 * 86400)
    ext = sum(1 for e in es if e['type'] == 'TRANSFER_OUT' and e.get('counterpartyBank') not in (None, 'HOME')
              and t - 30 * 86400 <= ts(e['occurredAt']) < t)
    rows[lab[c]['archetype']].append(((t - max(sal)) / 86400 if sal else float('nan'),
                                      bal(t) / b30 if b30 else float('nan'),
                                      s(td - 60, td - 30) / avg, s(td - 15, td) * 2 / avg, ext))
print('archetype n | days since salary | balance now/30d before | prev 30d / avg | last 15d / avg | ext out 30d  (medians)')
for a, r in sorted(rows.items()):
    med = [statistics.median([x[i] for x in r if x[i] == x[i]] or [float('nan')]) for i in range(5)]
    print(f'{a} {len(r)} | ' + ' | '.join(f'{m:.2f}' for m in med))
