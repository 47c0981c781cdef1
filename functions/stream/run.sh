#!/bin/sh
# The stream function's handler. The Lambda Web Adapter (AWS_LAMBDA_EXEC_WRAPPER=/opt/bootstrap)
# runs this script, waits until AWS_LWA_READINESS_CHECK_PATH answers on the port, then forwards
# every request to it and streams the responses back (AWS_LWA_INVOKE_MODE=response_stream).
# jobtail and its dependencies come from the layer (/opt/python); app.py is in this folder.
# No access log: uvicorn would write every URL, stream tokens (?token=) included; API Gateway
# keeps an access log without query strings instead.
PATH="$PATH:${LAMBDA_TASK_ROOT:-.}/bin" \
PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}/opt/python${LAMBDA_RUNTIME_DIR:+:$LAMBDA_RUNTIME_DIR}" \
exec python -m uvicorn --factory app:create --no-access-log \
    --host 127.0.0.1 --port "${AWS_LWA_PORT:-${PORT:-8080}}" --timeout-graceful-shutdown 1
