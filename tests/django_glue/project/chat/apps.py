import os

from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "tests.django_glue.project.chat"
    label = "chat"

    def ready(self):
        if os.environ.get("DG_TEST_REPORT_SIGNALS") == "1":
            from django_glue.signals import worker_process_ready, worker_ready

            worker_ready.connect(report_worker_ready)
            worker_process_ready.connect(report_process_ready)


def report_worker_ready(sender, **kwargs):
    sender.channel_layer.send("test.signals", {"signal": "worker_ready", "pid": os.getpid()})


def report_process_ready(sender, **kwargs):
    sender.workers[0].channel_layer.send("test.signals", {"signal": "worker_process_ready", "pid": os.getpid()})
