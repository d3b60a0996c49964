# voidlink for Nuke: runs in every mode (GUI, `nuke -t`, render farm).
# `voidlink install nuke` puts the client in lib/ and its compiled dependencies for each Nuke Python in
# python<major><minor>/ beside this file; a site that installs voidlink into Nuke's Python needs neither.
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
for _folder in ("python{}{}".format(*sys.version_info[:2]), "lib"):
    _folder = os.path.join(_here, _folder)
    if os.path.isdir(_folder) and _folder not in sys.path:
        sys.path.insert(0, _folder)
_settings = os.path.join(_here, "voidlink_settings.py")
if os.path.isfile(_settings):
    with open(_settings) as _stream:
        exec(compile(_stream.read(), _settings, "exec"))

try:
    from voidlink.hosts.nuke import startup as _voidlink_startup
except ImportError as _error:
    print(f"voidlink: not loaded ({_error}); run `voidlink install nuke` again", file=sys.stderr)
else:
    _voidlink_startup.install_callbacks()
