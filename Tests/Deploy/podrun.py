#!/usr/bin/env python3
"""Runs the DaemonSet's pod template from `kubectl kustomize` output the way the kubelet would,
on a Docker engine: hostPath volumes (a missing DirectoryOrCreate one is created root:root 0755,
as the kubelet does), ConfigMap volumes in the kubelet's layout (files behind a `..data` link
that an update swaps), hostPID, hostNetwork, runAsUser/runAsGroup, capabilities,
readOnlyRootFilesystem, allowPrivilegeEscalation, mount propagation; seccomp unconfined, the
kubelet's default. Init containers run to completion first, in order.

  podrun.py RENDERED.yaml STATE_PREFIX VOLUMES_DIR plan      # prints the docker run commands
  podrun.py RENDERED.yaml STATE_PREFIX VOLUMES_DIR start     # runs them: init containers, then the pod's
  podrun.py RENDERED.yaml STATE_PREFIX VOLUMES_DIR publish CONFIGMAP FILE   # a ConfigMap update

STATE_PREFIX is put in front of every DirectoryOrCreate hostPath, so a test never touches the
host's own /var/lib/portwatch; the system paths (/, /sys/...) are the host's."""
import json, os, pathlib, shlex, subprocess, sys, time, yaml

DOCKER = os.environ.get("DOCKER", "/usr/bin/docker")
rendered, prefix, volumes_dir, action = sys.argv[1:5]
docs = [d for d in yaml.safe_load_all(open(rendered)) if d]
ds = next(d for d in docs if d["kind"] == "DaemonSet")
configmaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
pod = ds["spec"]["template"]["spec"]
generation = [0]


def publish(name, data):
    """Writes a ConfigMap volume as the kubelet's AtomicWriter does."""
    root = pathlib.Path(volumes_dir) / name
    root.mkdir(parents=True, exist_ok=True)
    generation[0] = int(time.time() * 1000)
    hidden = root / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{generation[0]}"
    hidden.mkdir()
    for key, text in data.items():
        (hidden / key).write_text(text)
    os.chmod(hidden, 0o755)
    old = os.readlink(root / "..data") if (root / "..data").is_symlink() else None
    tmp = root / "..data_tmp"
    if tmp.is_symlink():
        tmp.unlink()
    os.symlink(hidden.name, tmp)
    os.rename(tmp, root / "..data")
    for key in data:
        if not (root / key).is_symlink():
            os.symlink(f"..data/{key}", root / key)
    if old:
        subprocess.run(["rm", "-rf", str(root / old)], check=True)
    return root


def host_source(volume):
    if "hostPath" in volume:
        hp = volume["hostPath"]
        path = hp["path"]
        if hp.get("type") == "DirectoryOrCreate":
            path = prefix + path
            if not os.path.exists(path):
                os.makedirs(path, mode=0o755)
                os.chown(path, 0, 0)
                os.chmod(path, 0o755)
        return path
    if "configMap" in volume:
        name = volume["configMap"]["name"]
        return str(publish(name, configmaps[name]["data"]))
    sys.exit(f"podrun: volume kind not supported: {volume}")


def propagation(path):
    out = subprocess.run(["findmnt", "-no", "PROPAGATION", "--target", path], capture_output=True, text=True).stdout
    return out.split(",")[0].strip()


def run_args(container, sources, detached):
    sc = container.get("securityContext", {})
    name = f"pwtest-pod-{container['name']}"
    args = [DOCKER, "run", "--name", name, "-d" if detached else "--rm",
            "--security-opt", "seccomp=unconfined"]
    if pod.get("hostPID"):
        args += ["--pid", "host"]
    if pod.get("hostNetwork"):
        args += ["--network", "host"]
    if "runAsUser" in sc:
        args += ["--user", f"{sc['runAsUser']}:{sc.get('runAsGroup', sc['runAsUser'])}"]
    caps = sc.get("capabilities", {})
    args += [f"--cap-drop={c}" for c in caps.get("drop", [])] + [f"--cap-add={c}" for c in caps.get("add", [])]
    if sc.get("readOnlyRootFilesystem"):
        args += ["--read-only"]
    if sc.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    for m in container.get("volumeMounts", []):
        options = ["ro"] if m.get("readOnly") else ["rw"]
        if m.get("mountPropagation") == "HostToContainer":
            if propagation(sources[m["name"]]) in ("shared", "slave"):
                options.append("rslave")
            else:
                # As on a host where systemd does not make / shared (here): the kubelet's
                # runtime would refuse too; mounts made later on the host are not seen.
                print(f"podrun: {sources[m['name']]} is a private mount on this host: HostToContainer propagation left out",
                      file=sys.stderr)
        args += ["-v", f"{sources[m['name']]}:{m['mountPath']}:{','.join(options)}"]
    if "command" in container:
        args += ["--entrypoint", container["command"][0]]
    args.append(container["image"])
    args += container.get("command", [])[1:] + container.get("args", [])
    return args


if action == "publish":
    name, file = sys.argv[5:7]
    key = next(iter(configmaps[name]["data"]))
    publish(name, {key: open(file).read()})
    sys.exit(0)

sources = {v["name"]: host_source(v) for v in pod["volumes"]}
steps = [(c, False) for c in pod.get("initContainers", [])] + [(c, True) for c in pod["containers"]]
for container, detached in steps:
    args = run_args(container, sources, detached)
    if action == "plan":
        print(shlex.join(args))
        continue
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"podrun: {container['name']} exited {result.returncode}: {result.stderr.strip() or result.stdout.strip()}")
    print(f"podrun: {container['name']}: {'started' if detached else 'completed'}")
