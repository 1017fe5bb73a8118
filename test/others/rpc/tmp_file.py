#!/usr/bin/python3
# The --tmp-file fields of criu_opts over RPC: tmp_files,
# tmp_file_compress, tmp_file_auto, tmp_file_limit, tmp_file_precopy and
# tmp_files_optional.
#
# A task keeps open a file in DIR/saved and one on the tmpfs /dev/shm.
# criu refuses a dump with an unknown compression, and one whose automatic
# mode finds the /dev/shm file over a limit of 1 byte; a dump with every
# field set saves both files; they are removed, and the restored task has
# them open again, with their content.

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time

import rpc_pb2 as rpc

from setup_swrk import setup_swrk

DATA = b'saved by --tmp-file\n'


def fail(msg, log=None):
    print('FAIL: ' + msg)
    if log and os.path.isfile(log):
        with open(log) as f:
            print(f.read()[-4000:])
    sys.exit(1)


def do_rpc(req):
    swrk, s = setup_swrk()
    s.send(req.SerializeToString())
    resp = rpc.criu_resp()
    resp.ParseFromString(s.recv(1024))
    s.close()
    swrk.wait()
    return resp


def request(kind, log, **opts):
    req = rpc.criu_req()
    req.type = kind
    req.opts.log_level = 4
    req.opts.log_file = log
    req.opts.images_dir_fd = os.open(args['dir'], os.O_DIRECTORY)
    for name, value in opts.items():
        if name in ('tmp_files', 'tmp_files_optional'):
            getattr(req.opts, name).extend(value)
        else:
            setattr(req.opts, name, value)
    return req


def log_has(log, text):
    with open(os.path.join(args['dir'], log)) as f:
        return text in f.read()


parser = argparse.ArgumentParser(description="--tmp-file over CRIU RPC")
parser.add_argument('dir', type=str, help="Directory where CRIU images should be placed")
args = vars(parser.parse_args())
args['dir'] = os.path.abspath(args['dir'])

saved = os.path.join(args['dir'], 'saved')
data = os.path.join(saved, 'data')
shm = '/dev/shm/criu-rpc-tmp_file.%d' % os.getpid()
os.makedirs(saved, exist_ok=True)
for path in (data, shm):
    with open(path, 'wb') as f:
        f.write(DATA)

# The task: its own session, fds 3 and 4 on the two files
task = subprocess.Popen(['sh', '-c', 'exec 3<"$0" 4<"$1"; exec sleep 1000', data, shm],
                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL, start_new_session=True)
pid = task.pid
for _ in range(100):
    if os.path.exists('/proc/%d/fd/4' % pid):
        break
    time.sleep(0.05)

try:
    print('*** Dump with tmp_file_compress "lz4": refused ***')
    resp = do_rpc(request(rpc.DUMP, 'dump-lz4.log', pid=pid, tmp_files=[saved],
                          tmp_file_compress='lz4'))
    if resp.success or '--tmp-file-compress lz4: must be gzip, zstd or none' not in resp.cr_errmsg:
        fail('the dump with lz4: %r' % resp.cr_errmsg, os.path.join(args['dir'], 'dump-lz4.log'))
    if task.poll() is not None:
        fail('the refused dump killed the task')

    print('*** Dump with tmp_file_auto over tmp_file_limit 1: refused ***')
    resp = do_rpc(request(rpc.DUMP, 'dump-limit.log', pid=pid, tmp_files=[saved],
                          tmp_file_auto=True, tmp_file_limit=1))
    if resp.success or not log_has('dump-limit.log', 'over --tmp-file-limit 1\n'):
        fail('the dump over the limit: %r' % resp.cr_errmsg, os.path.join(args['dir'], 'dump-limit.log'))
    if task.poll() is not None:
        fail('the refused dump killed the task')

    print('*** Dump with every field ***')
    missing = os.path.join(args['dir'], 'not-there')
    resp = do_rpc(request(rpc.DUMP, 'dump.log', pid=pid, tmp_files=[saved], tmp_file_compress='zstd',
                          tmp_file_auto=True, tmp_file_limit=1 << 20, tmp_file_precopy=True,
                          tmp_files_optional=[missing]))
    log = os.path.join(args['dir'], 'dump.log')
    if not resp.success:
        fail('the dump: %r' % resp.cr_errmsg, log)
    task.wait()
    if not log_has('dump.log', '--tmp-file-auto: saving %s (%d bytes)' % (shm, len(DATA))):
        fail('tmp_file_auto did not save %s' % shm, log)
    if not log_has('dump.log', '--tmp-file-optional %s: the dumped tree has no such path' % missing):
        fail('tmp_files_optional: no warning for %s' % missing, log)
    if not log_has('dump.log', 'Pre-copy: archiving 2 entries while the tree runs'):
        fail('tmp_file_precopy did not run the pre-copy', log)
    with open(os.path.join(args['dir'], 'tmp-files.tar.img'), 'rb') as f:
        if f.read(4) != b'\x28\xb5\x2f\xfd':
            fail('tmp-files.tar.img is not a zstd archive')

    print('*** Remove the files, restore ***')
    shutil.rmtree(saved)
    os.unlink(shm)
    resp = do_rpc(request(rpc.RESTORE, 'restore.log'))
    log = os.path.join(args['dir'], 'restore.log')
    if not resp.success or resp.restore.pid != pid:
        fail('the restore: %r' % resp.cr_errmsg, log)
    for fd, path in ((3, data), (4, shm)):
        if os.readlink('/proc/%d/fd/%d' % (pid, fd)) != path:
            fail('the restored task has not %s open' % path)
        with open('/proc/%d/fd/%d' % (pid, fd), 'rb') as f, open(path, 'rb') as g:
            if f.read() != DATA or g.read() != DATA:
                fail('%s does not have its content back' % path)
    print('PASS')
finally:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if task.returncode is None:
        task.wait()
    if os.path.exists(shm):
        os.unlink(shm)
