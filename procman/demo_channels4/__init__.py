"""``procman demo --channels4``: the chat of the official Channels tutorial (rooms,
``AsyncWebsocketConsumer``, ``group_send``), unchanged in its parts, run by ``procman run`` in ASGI 3
mode with several Daphne processes on the shared-memory Channels 4 layer.

Layout as in the tutorial: the project (``settings``, ``urls``, ``asgi``) and the ``chat`` app
(``views``, ``urls``, ``consumers``, ``routing``, templates). One addition, so that a newcomer
sees the point: every WebSocket is told which Daphne process serves it, and every chat message
says which process received it, so a message typed in a tab served by one process is seen
arriving in a tab served by another.
"""
