"""Stream function: the same FastAPI app, served by uvicorn under the Lambda Web Adapter.

``run.sh`` starts ``uvicorn --factory app:create``. The adapter (``AWS_LAMBDA_EXEC_WRAPPER=
/opt/bootstrap``) waits until ``AWS_LWA_READINESS_CHECK_PATH`` answers, then turns each API
Gateway or Function URL event into an HTTP request to the app and streams the response back as
it is written (``AWS_LWA_INVOKE_MODE=response_stream``): the logs route streams live, for at
most ``JOBTAIL_STREAM_WINDOW`` seconds, then ends with ``retry:`` and the browser resumes.
There is no Lambda handler to decorate: the request context arrives in the
``x-amzn-request-context`` and ``x-amzn-lambda-context`` headers; jobtail's logs go out as
JSON (uvicorn's access lines stay plain).
"""

from __future__ import annotations

import logging

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from fastapi import FastAPI

from jobtail.aws import lambda_settings
from jobtail.web.app import create_app


def create() -> FastAPI:
    """The app, with secrets resolved: called once, when uvicorn starts (the cold start)."""
    logging.getLogger("jobtail")  # registered, so the package's records come out as JSON too
    copy_config_to_registered_loggers(source_logger=Logger(), include={"jobtail"})
    return create_app(lambda_settings())
