from __future__ import annotations

from django.urls import path

from workspace_app.api import views

prefix = "sessions/<str:session_id>"
urlpatterns = [
    path(f"{prefix}/files", views.FilesView.as_view(), name="api-files"),
    path(f"{prefix}/files/content", views.FileContentView.as_view(), name="api-file-content"),
    path(f"{prefix}/files/move", views.FileMoveView.as_view(), name="api-file-move"),
    path(f"{prefix}/files/upload", views.FileUploadView.as_view(), name="api-file-upload"),
    path(f"{prefix}/files/download", views.FileDownloadView.as_view(), name="api-file-download"),
    path(f"{prefix}/files/search", views.FileSearchView.as_view(), name="api-file-search"),
    path(f"{prefix}/search", views.SearchView.as_view(), name="api-search"),
    path(f"{prefix}/search/files", views.QuickOpenView.as_view(), name="api-search-files"),
    path(f"{prefix}/replace", views.ReplaceView.as_view(), name="api-replace"),
    path(f"{prefix}/exec", views.ExecView.as_view(), name="api-exec"),
    path(f"{prefix}/run", views.RunView.as_view(), name="api-run"),
    path(f"{prefix}/runs", views.RunsView.as_view(), name="api-runs"),
    path(f"{prefix}/runs/<str:run_id>", views.RunDetailView.as_view(), name="api-run-detail"),
    path(f"{prefix}/runs/<str:run_id>/events", views.RunEventsView.as_view(), name="api-run-events"),
    path(f"{prefix}/runs/<str:run_id>/input", views.RunInputView.as_view(), name="api-run-input"),
    path(f"{prefix}/runs/<str:run_id>/stop", views.RunStopView.as_view(), name="api-run-stop"),
]
