#!/usr/bin/env python3
"""Reference BD-rate values for tests/test_rd_bdrate.c, computed with NumPy
independently of the C code: the classic Bjontegaard method with
numpy.polyfit / numpy.polyint, and the piecewise-cubic (pchip) variant as
Fritsch-Carlson Hermite interpolation integrated numerically (composite
Simpson on 200,001 samples of the overlap).

usage: python3 tools/bdrate_reference.py   (prints one line per case)
"""
import numpy as np

CASES = {
    # (anchor rates, anchor qualities, test rates, test qualities)
    "scaled_0.8": ([100, 200, 400, 800], [30.0, 33.0, 35.5, 37.2],
                   [80, 160, 320, 640], [30.0, 33.0, 35.5, 37.2]),
    "five_points": ([120, 260, 510, 1020, 1900], [28.1, 31.0, 33.6, 35.9, 37.4],
                    [90, 170, 380, 700, 1500], [27.5, 30.8, 34.1, 36.2, 38.0]),
    "top1_like": ([300, 520, 900, 1500, 2600, 4100], [0.52, 0.71, 0.83, 0.885, 0.905, 0.912],
                  [210, 400, 610, 1100, 1800], [0.60, 0.78, 0.86, 0.90, 0.911]),
}


def classic(ra, qa, rt, qt):
    ya, yt = np.log(ra), np.log(rt)
    pa, pt = np.polyfit(qa, ya, 3), np.polyfit(qt, yt, 3)
    lo, hi = max(min(qa), min(qt)), min(max(qa), max(qt))
    ia, it = np.polyint(pa), np.polyint(pt)
    avg = ((np.polyval(it, hi) - np.polyval(it, lo)) - (np.polyval(ia, hi) - np.polyval(ia, lo))) / (hi - lo)
    return (np.exp(avg) - 1) * 100


def pchip_slopes(x, y):
    h = np.diff(x)
    m = np.diff(y) / h
    d = np.zeros_like(x)
    for k in range(1, len(x) - 1):
        if m[k - 1] * m[k] <= 0:
            d[k] = 0.0
        else:
            w1, w2 = 2 * h[k] + h[k - 1], h[k] + 2 * h[k - 1]
            d[k] = (w1 + w2) / (w1 / m[k - 1] + w2 / m[k])

    def end(h0, h1, m0, m1):
        v = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
        if np.sign(v) != np.sign(m0):
            return 0.0
        if np.sign(m0) != np.sign(m1) and abs(v) > 3 * abs(m0):
            return 3 * m0
        return v

    d[0] = end(h[0], h[1], m[0], m[1])
    d[-1] = end(h[-1], h[-2], m[-1], m[-2])
    return d


def pchip_eval(x, y, d, t):
    k = np.clip(np.searchsorted(x, t, side="right") - 1, 0, len(x) - 2)
    h = x[k + 1] - x[k]
    s = (t - x[k]) / h
    h00, h10 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s
    h01, h11 = -2 * s**3 + 3 * s**2, s**3 - s**2
    return h00 * y[k] + h10 * h * d[k] + h01 * y[k + 1] + h11 * h * d[k + 1]


def pchip(ra, qa, rt, qt):
    lo, hi = max(min(qa), min(qt)), min(max(qa), max(qt))
    t = np.linspace(lo, hi, 200001)
    out = []
    for r, q in ((ra, qa), (rt, qt)):
        order = np.argsort(r)
        x, y = np.asarray(q, float)[order], np.log(np.asarray(r, float)[order])
        v = pchip_eval(x, y, pchip_slopes(x, y), t)
        w = np.ones_like(t)
        w[1:-1:2], w[2:-1:2] = 4, 2
        out.append((t[1] - t[0]) / 3 * np.sum(w * v))
    return (np.exp((out[1] - out[0]) / (hi - lo)) - 1) * 100


if __name__ == "__main__":
    for name, (ra, qa, rt, qt) in CASES.items():
        print(f"{name}: classic {classic(ra, qa, rt, qt):.12f} pchip {pchip(ra, qa, rt, qt):.12f}")
