# Sourced by the send_vs_*.sh scripts: starts nginx on 127.0.0.1:$1,
# answering 204 to every request, keeping connections open, logging
# nothing, with its files in $work (the caller's scratch directory, whose
# cleanup kills "$work/nginx.pid").
nginx_204() {
    cat >"$work/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $work/body;
    server {
        listen 127.0.0.1:$1;
        keepalive_requests 1000000;
        location / { return 204; }
    }
}
CONF
    nginx -c "$work/nginx.conf" -p "$work"
    sleep 0.5
}
