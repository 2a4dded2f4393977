// One way to print a point in time in tables and messages, everywhere:
// "2026-12-02 05:19:33Z" in UTC (the default, the same on every host), or
// with --local-time "2026-12-02 06:19:33+01:00" in this host's time zone.
// JSON output keeps the stored ISO 8601 UTC strings.

export function formatTime(iso: string, local = false): string {
  const d = new Date(iso)
  if (Number.isNaN(d.getTime())) return iso
  if (!local) return d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z')
  const pad = (n: number) => String(n).padStart(2, '0')
  const off = -d.getTimezoneOffset()
  const zone = `${off < 0 ? '-' : '+'}${pad(Math.floor(Math.abs(off) / 60))}:${pad(Math.abs(off) % 60)}`
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}${zone}`
}
