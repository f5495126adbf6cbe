"""The original tcp_passthrough scenario: a web server started in the
guest (busybox httpd), reached from the host through a forwarded port,
with no emulated network card involved.

Also shows the process list and the socket list the agent reads from the
guest's /proc. Run from the repository root:

    .venv/bin/python examples/httpd_forward.py
"""

import time
import urllib.request

from pandagpm.host import Panda
from pandagpm.tools import forward, ports, procs

panda = Panda(generic="x86_64", verbose=False)


@panda.queue_blocking
def run():
    panda.revert_sync("root")
    panda.run_serial_cmd("mkdir -p /www && "
                         "echo 'hello from the guest web server' > "
                         "/www/index.html")
    pid = int(panda.run_serial_cmd("httpd -f -p 80 -h /www & echo $!"))

    for _ in range(100):  # httpd needs a moment to listen
        listening = [s for s in ports.list_sockets(panda) if s.listening]
        if any(s.local_port == 80 for s in listening):
            break
        time.sleep(0.1)
    print(ports.format_sockets(listening))
    httpd = [p for p in procs.list_processes(panda) if p.pid == pid]
    print("httpd:", httpd[0])

    fwd = forward.forward(panda, guest_port=80)  # any free host port
    url = f"http://127.0.0.1:{fwd.host_port}/index.html"
    body = urllib.request.urlopen(url, timeout=60).read().decode()
    print(f"GET {url} -> {body.strip()!r}")
    fwd.close()
    panda.end_analysis()


panda.run()
