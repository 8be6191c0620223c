"""RETR one file as a Python ftplib program does: a passive data connection read with a 1 MiB
recv_into loop. Prints the bytes read and the seconds from sending RETR to the final reply.

    python3 ftplib_retr.py HOST PORT USER PASSWORD PATH
"""

import ftplib
import sys
import time

host, port, user, password, path = sys.argv[1:6]
ftp = ftplib.FTP()
ftp.connect(host, int(port), timeout=60)
ftp.login(user, password)
ftp.voidcmd("TYPE I")
view = memoryview(bytearray(1 << 20))
total = 0
started = time.perf_counter()
with ftp.transfercmd("RETR " + path) as conn:
    while True:
        n = conn.recv_into(view)
        if n == 0:
            break
        total += n
ftp.voidresp()
seconds = time.perf_counter() - started
ftp.quit()
print(total, seconds)
