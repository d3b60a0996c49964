# voidlink for Nuke: runs only with the GUI, after init.py.
try:
    from voidlink.hosts.nuke import startup as _voidlink_startup
except ImportError:
    pass  # init.py already said why
else:
    _voidlink_startup.add_menus()
