# Citations of docs/ resolve: no bare or out-of-repo document names outside
# docs/, and every "docs/<name>.md §N" names a section heading that exists.
add_test(NAME docs_citations
  COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/docs_citations.sh ${PROJECT_SOURCE_DIR})
set_tests_properties(docs_citations PROPERTIES LABELS integration TIMEOUT 60)
