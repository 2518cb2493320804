// A sparkline: the last minute of one series on a small canvas, scaled to its own maximum.
// @ts-check

const SPARK = 60 // samples a sparkline shows

export const sparkline = (
  /** @type {HTMLCanvasElement} */ c,
  /** @type {Array<number|null>} */ data,
  /** @type {string} */ color,
  max0 = 0
) => {
  const dpr = window.devicePixelRatio || 1
  const w = c.clientWidth || 110
  const h = c.clientHeight || 26
  if (c.width !== w * dpr) c.width = w * dpr
  if (c.height !== h * dpr) c.height = h * dpr
  const g = /** @type {CanvasRenderingContext2D} */ (c.getContext("2d"))
  g.setTransform(dpr, 0, 0, dpr, 0, 0)
  g.clearRect(0, 0, w, h)
  const pts = data.slice(-SPARK)
  const max = Math.max(max0, ...pts.map((v) => v ?? 0)) || 1
  const x = (/** @type {number} */ i) =>
    (i / (SPARK - 1)) * (w - 2) + 1 + (SPARK - pts.length) * ((w - 2) / (SPARK - 1))
  const y = (/** @type {number} */ v) => h - 2 - (v / max) * (h - 4)
  g.strokeStyle = "rgba(154,164,178,0.25)"
  g.beginPath()
  g.moveTo(0, h - 1.5)
  g.lineTo(w, h - 1.5)
  g.stroke()
  g.beginPath()
  let started = false
  pts.forEach((v, i) => {
    const yy = y(v ?? 0)
    if (!started) g.moveTo(x(i), yy)
    else g.lineTo(x(i), yy)
    started = true
  })
  g.strokeStyle = color
  g.lineWidth = 1.5
  g.stroke()
  if (pts.length > 1) {
    g.lineTo(x(pts.length - 1), h)
    g.lineTo(x(0), h)
    g.closePath()
    g.globalAlpha = 0.18
    g.fillStyle = color
    g.fill()
    g.globalAlpha = 1
  }
}
