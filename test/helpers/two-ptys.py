# Runs a command with stdout and stderr on two separate pseudo-terminals
# (both TTYs, 120x40), stdin from /dev/null, and writes what each carried to
# the files given, so a test can tell which stream the live view went to.
# usage: two-ptys.py [--touch-when REGEX FILE] OUT_FILE ERR_FILE CMD [ARG...];
# exits with the command's status. --touch-when creates FILE once stderr
# matches REGEX: a test stalls the command on FILE and releases it only
# after the live view showed what it must show (a known point, no timer).
import fcntl, os, pty, re, select, struct, subprocess, sys, termios

args = sys.argv[1:]
touch_when = None
if args[0] == '--touch-when':
    touch_when = (re.compile(args[1].encode()), args[2])
    args = args[3:]
out_path, err_path, cmd = args[0], args[1], args[2:]
masters, slaves = [], []
for _ in range(2):
    m, s = pty.openpty()
    fcntl.ioctl(s, termios.TIOCSWINSZ, struct.pack('HHHH', 40, 120, 0, 0))
    masters.append(m)
    slaves.append(s)
child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=slaves[0], stderr=slaves[1], env={**os.environ, 'TERM': 'xterm'})
for s in slaves:
    os.close(s)
got = {masters[0]: bytearray(), masters[1]: bytearray()}
open_fds = set(masters)
while open_fds:
    ready, _, _ = select.select(list(open_fds), [], [], 600)
    if not ready:
        child.kill()
        break
    for fd in ready:
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: the child closed its side of this pty
            data = b''
        if data:
            got[fd] += data
            if touch_when and fd == masters[1] and touch_when[0].search(got[fd]):
                open(touch_when[1], 'w').close()
                touch_when = None
        else:
            open_fds.discard(fd)
with open(out_path, 'wb') as f:
    f.write(got[masters[0]])
with open(err_path, 'wb') as f:
    f.write(got[masters[1]])
sys.exit(child.wait())
