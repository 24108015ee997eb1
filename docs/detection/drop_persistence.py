#!/usr/bin/env python3
"""Estimate of "wait for what follows": a drop-opened alert raised only if
activity.drop still holds K days after it fired.

For every alert whose first reason is activity.drop, it finds the first day
after the firing on which the drop no longer holds (transactions of the last
30 days > 0.5 x the customer's average per 30 days over the 180 days before,
clipped to its history, as the engine computes it). With a wait of K days:
a stable customer who recovered within K days gets no alert; every other
drop-opened alert comes K days later. A churner keeps its alert (its other
rules fire anyway), so the lead printed is a bound from below on what the
wait leaves: another rule may warn before the K days are up. An estimate
from the back-test's alerts, not an engine run.

usage: drop_persistence.py SIMDIR BACKTEST.json
"""
import collections, datetime as dt, json, statistics, sys

sim, bt = sys.argv[1], sys.argv[2]
CI = {'DEPOSIT', 'WITHDRAWAL', 'TRANSFER_IN', 'TRANSFER_OUT', 'CARD_PAYMENT', 'SALARY'}
day = lambda s: int(dt.datetime.fromisoformat(s.replace('Z', '+00:00')).timestamp() // 86400)
lab = {d['customerId']: d for d in map(json.loads, open(f'{sim}/labels.ndjson'))}
alert, opened = {}, {}
for d in map(json.loads, open(bt)):
    if 'alertId' in d:
        alert[d['customerId']], opened[d['customerId']] = day(d['firstSignalAt']), d['reasons'][0]['ruleId']
cnt, first = collections.defaultdict(collections.Counter), {}
for d in map(json.loads, open(f'{sim}/events.ndjson')):
    c = d['customerId']
    if c in alert:
        first.setdefault(c, day(d['occurredAt']))
        if d['type'] in CI:
            cnt[c][day(d['occurredAt'])] += 1


def low(c, d):
    recent = sum(cnt[c][x] for x in range(d - 30, d))
    nb = min(180, d - 30 - first[c])
    return recent * nb <= 0.5 * sum(cnt[c][x] for x in range(d - 30 - nb, d - 30)) * 30


holds = {}
for c, t in alert.items():
    if opened[c] == 'activity.drop':
        k = 1
        while k <= 120 and low(c, t + k):
            k += 1
        holds[c] = k  # first day after the firing without the drop
churn = lambda c: day(lab[c]['churnDate'] + ('' if 'T' in lab[c]['churnDate'] else 'T00:00:00Z'))
for K in (0, 7, 14, 21, 28):
    tp = fp = 0
    leads = []
    for c, t in alert.items():
        if opened[c] == 'activity.drop':
            if holds[c] <= K and not lab[c]['churned']:
                continue
            t += K
        if lab[c]['churned']:
            tp += 1
            if lab[c]['archetype'] != 'silent':
                leads.append(churn(c) - t)
        else:
            fp += 1
    print(f'K {K:2d}: precision {tp / (tp + fp):.3f}, false alerts {fp}, median lead of detectable churners >= {statistics.median(leads):.1f} days')
