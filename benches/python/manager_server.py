"""CPython's own BaseManager serving the objects benches/python_clients.rs
measures (a queue, a dict, a list, a namespace), for the same client script
as the mproc server. Prints its port, then serves until killed."""
import queue
import sys
from multiprocessing.managers import BaseManager, DictProxy, ListProxy, Namespace, NamespaceProxy

q, d, l, ns = queue.Queue(), {}, [], Namespace()


class M(BaseManager):
    pass


M.register("queue", callable=lambda: q)
M.register("dict", callable=lambda: d, proxytype=DictProxy)
M.register("list", callable=lambda: l, proxytype=ListProxy)
M.register("ns", callable=lambda: ns, proxytype=NamespaceProxy)

if __name__ == "__main__":
    m = M(address=("127.0.0.1", 0), authkey=sys.argv[1].encode())
    server = m.get_server()
    print(server.address[1], flush=True)
    server.serve_forever()
