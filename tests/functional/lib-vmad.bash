# tests/functional/lib-vmad.bash — the "vmad" implementation of the NBD test server
# abstraction of lib.bash (sourced by it): start_server's nbd-serve-style arguments
#     [--tcp] --blockdev NODE,FILE[,ro][,direct] ... --export NODE[,writable][,name=NAME] ...
#     [--max-connections N]
# become vmad's --blockdev/--nbd-server/--export options, so every NBD functional test
# runs against the real daemon with NBD_SERVER_IMPL=vmad.

# keyval value: a comma is written as two commas
_vmad_kv() {
    printf '%s' "${1//,/,,}"
}

server_start_vmad() {
    local tcp=0 maxconn= opts=() a
    local -a rest=("$@")
    local i=0
    while [ $i -lt ${#rest[@]} ]; do
        a=${rest[$i]}
        case "$a" in
        --tcp) tcp=1 ;;
        --max-connections) i=$((i + 1)); maxconn=${rest[$i]} ;;
        --blockdev)
            i=$((i + 1))
            local spec=${rest[$i]} node file flags f drv=file extra=
            node=${spec%%,*}
            file=${spec#*,}
            flags=
            case "$file" in *,ro*|*,direct*) flags=${file#*,}; file=${file%%,*} ;; esac
            for f in ${flags//,/ }; do
                case "$f" in
                ro) extra+=",read-only=on" ;;
                direct) extra+=",cache.direct=on" ;;
                *) fail "server_start_vmad: unknown --blockdev flag $f" ;;
                esac
            done
            [ -b "$file" ] && drv=host_device
            opts+=(--blockdev "driver=$drv,node-name=$node,filename=$(_vmad_kv "$file")$extra")
            ;;
        --export)
            i=$((i + 1))
            local spec=${rest[$i]} node opt eopts= id
            node=${spec%%,*}
            id=$node
            for opt in $(echo "${spec#"$node"}" | tr ',' ' '); do
                case "$opt" in
                writable) eopts+=",writable=on" ;;
                name=*) eopts+=",name=$(_vmad_kv "${opt#name=}")"; id=${opt#name=} ;;
                *) fail "server_start_vmad: unknown --export flag $opt" ;;
                esac
            done
            # the id must be unique: the export name is
            opts+=(--export "type=nbd,id=$(_vmad_kv "$id"),node-name=$node$eopts")
            ;;
        *) fail "server_start_vmad: unknown argument $a" ;;
        esac
        i=$((i + 1))
    done
    local vmad=${VMAD:-$BUILDDIR/vmad}
    [ -x "$vmad" ] || fail "$vmad not built (make)"

    local attempt server
    for attempt in 1 2 3 4 5 6 7 8; do
        if [ $tcp = 1 ]; then
            NBD_PORT=$((20000 + (RANDOM * 7 + attempt * 131) % 40000))
            NBD_SOCK=
            server="addr.type=inet,addr.host=127.0.0.1,addr.port=$NBD_PORT"
        else
            NBD_SOCK=$T/nbd.sock
            NBD_PORT=
            server="addr.type=unix,addr.path=$(_vmad_kv "$NBD_SOCK")"
        fi
        [ -n "$maxconn" ] && server+=",max-connections=$maxconn"
        rm -f "$T/vmad.pid"
        # the pid file appears once every option is done: sockets listen, exports exist
        "$vmad" --nbd-server "$server" "${opts[@]}" --monitor "$T/qmp.sock" \
            --pidfile "$T/vmad.pid" >>"$T/server.log" 2>&1 &
        SERVER_PID=$!
        local j
        for j in $(seq 1 300); do
            if [ -s "$T/vmad.pid" ]; then
                return 0
            fi
            kill -0 "$SERVER_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$SERVER_PID" 2>/dev/null; then
            fail "vmad did not get ready in 30 s"
        fi
        wait "$SERVER_PID" 2>/dev/null
        SERVER_PID=
        if [ $tcp = 1 ] && grep -q 'Address already in use' "$T/server.log"; then
            continue
        fi
        fail "vmad failed to start: $(tail -n 1 "$T/server.log")"
    done
    fail "no free TCP port found"
}
